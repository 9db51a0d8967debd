"""The component history chart's layout (bot/web/history.py), over any deploy history: no
two labels overlap, none leaves the chart, releases are never written like deploy ids. The
browser test checks the same on the drawn SVG's real geometry."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.web.history import ABOVE, BELOW, CHAR_W, WIDTH, chart
from tests.support.examples import examples

ENVS = ["toolsbeta", "tools", "canary"]
NOW = 1_800_000_000.0
STATES = [("auto-apply", "done"), ("apply", "failed"), ("rollback", "done"),
          ("apply", "interrupted"), ("review", "reviewed"), ("apply", "applying")]  # fmt: skip


@st.composite
def deploy_rows(draw: Any) -> list[dict[str, Any]]:
    rows = []
    for i in range(draw(st.integers(1, 40))):
        start = NOW - draw(st.floats(0, 3 * 86400))
        took = draw(st.floats(0, 900))
        action, state = draw(st.sampled_from(STATES))
        n = draw(st.integers(1, 99999))
        rows.append({
            "id": i + 1, "env": draw(st.sampled_from(ENVS)), "action": action, "state": state,
            "version": f"0.0.{n}-20261107230700-4371234{n % 10}", "from_version": None,
            "actor": "irc:ana", "error": None, "started_at": start,
            "finished_at": None if state == "applying" else min(start + took, NOW),
        })  # fmt: skip
    return rows


def boxes(rows: list[dict[str, Any]]) -> list[tuple[float, float, float, float, str]]:
    """(x0, y0, x1, y1, text) of every label, as wide as the layout budgets it."""
    drawn = chart(rows, ENVS, NOW)
    out = []
    for m in drawn.marks:
        if m.label_y is not None:
            out.append((m.label_x, m.label_y - 10, m.label_x + len(m.label) * CHAR_W,
                        m.label_y + 3, m.label))  # fmt: skip
    return out


@settings(max_examples=examples(150), deadline=None)
@given(deploy_rows())
def test_labels_never_overlap_nor_leave_the_chart(rows: list[dict[str, Any]]) -> None:
    found = boxes(rows)
    for i, (ax0, ay0, ax1, ay1, text) in enumerate(found):
        assert 0 <= ax0 and ax1 <= WIDTH, text
        assert not text.startswith("#"), text  # `#N` is a deploy id, never a release
        for bx0, by0, bx1, by1, other in found[i + 1 :]:
            assert ax1 <= bx0 or bx1 <= ax0 or ay1 <= by0 or by1 <= ay0, (text, other)


@settings(max_examples=examples(50), deadline=None)
@given(deploy_rows())
def test_the_first_deploy_of_each_lane_is_labelled_with_its_release(
    rows: list[dict[str, Any]],
) -> None:
    drawn = chart(rows, ENVS, NOW)
    first: dict[float, Any] = {}
    for m in sorted(drawn.marks, key=lambda m: m.x):
        first.setdefault(m.y, m)
    for m in first.values():
        assert m.label_y == m.y + ABOVE, m
        row = next(r for r in rows if r["id"] == m.deploy_id)
        assert m.label.split()[0] == row["version"].split("-")[0]
    assert {m.label_y - m.y for m in drawn.marks if m.label_y is not None} <= {ABOVE, BELOW}


def test_the_axis_ends_are_anchored_inside() -> None:
    drawn = chart([], ENVS, NOW)
    assert [a for _, _, a in drawn.ticks] == ["start", "middle", "middle", "middle", "end"]
    assert drawn.ticks[-1][0] <= WIDTH and drawn.ticks[0][0] >= 0
