"""A component's deploys over time, drawn server-side as SVG (no chart library, no script).

One lane per environment in promotion order; each deploy is a mark at its start time, as
wide as it took (at least a few pixels), labelled with its release (`0.0.134`, never `#134`:
`#` is for deploy ids, which the titles and the table name as "deploy #N"). Labels never
overlap: one that has no room above its mark goes below it, and one with no room there
either is left out (the mark's title still says it). Failed, interrupted and rolled-back
deploys are marked with a shape and a word, not colour alone. Every mark has a `<title>`
(who, version, how long, result) for hover and screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.core.text import format_duration
from bot.core.versions import parse_version

WIDTH = 960
LANE = 56
LEFT = 110
RIGHT = 20
TOP = 28
CHAR_W = 6.5  # the widest a character of a 10px label draws (generous: labels never touch)
FLAG_W = 10.0  # a 12px ✕ or ↶
GAP = 4.0
ABOVE, BELOW = -13.0, 22.0  # label baselines from the lane's line


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    w: float
    kind: str  # done | failed | interrupted | rollback | running | refused
    label: str
    title: str
    deploy_id: int
    label_x: float = 0.0
    label_y: float | None = None  # None: no room for the label (the title has it)
    flag: str | None = None  # ✕ failed or interrupted, ↶ rollback (drawn when it has room)


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lanes: list[tuple[str, float]]  # env, y
    ticks: list[tuple[float, str, str]]  # x, label, text-anchor
    marks: list[Mark]
    x0: float
    x1: float


def _short(version: str | None) -> str:
    """The release part of a CI version (`0.0.134`); other versions as they are, cut."""
    v = parse_version(version or "")
    if v is None:
        return (version or "?")[:12]
    return v.raw.split("-", 1)[0]


def _flag(kind: str) -> str | None:
    return {"failed": "✕", "interrupted": "✕", "rollback": "↶"}.get(kind)


def _place(marks: list[Mark]) -> list[Mark]:
    """Give each mark's label a spot that overlaps no other label: above the mark, else
    below it, else none; every label stays inside the chart."""
    ends: dict[tuple[float, float], float] = {}  # (lane y, row) -> where the last label ends
    flags: dict[float, float] = {}  # lane y -> where the last flag ends
    out = []
    for m in sorted(marks, key=lambda m: (m.y, m.x)):
        width = len(m.label) * CHAR_W
        x = min(m.x, WIDTH - 2 - width)
        spot = None
        for row in (ABOVE, BELOW):
            if x >= ends.get((m.y, row), float("-inf")) + GAP:
                ends[(m.y, row)] = x + width
                spot = m.y + row
                break
        flag = _flag(m.kind)
        centre = m.x + m.w / 2
        if flag is not None and centre - FLAG_W / 2 < flags.get(m.y, float("-inf")) + 1:
            flag = None
        elif flag is not None:
            flags[m.y] = centre + FLAG_W / 2
        out.append(replace(m, label_x=x, label_y=spot, flag=flag))
    return out


def kind_of(row: dict[str, Any]) -> str:
    if row["action"].startswith("rollback"):
        return "rollback" if row["state"] == "done" else row["state"]
    return {"requested": "running", "applying": "running", "verifying": "running"}.get(
        row["state"], row["state"]
    )


def chart(rows: list[dict[str, Any]], envs: list[str], now: float) -> Chart:
    """Lay out deploy rows (any order) over the time they span."""
    lanes = [(env, TOP + LANE * i + LANE / 2) for i, env in enumerate(envs)]
    lane_y = dict(lanes)
    height = int(TOP + LANE * len(envs) + 24)
    starts = [r["started_at"] for r in rows]
    t0 = min(starts) if starts else now - 3600
    t1 = max([now, *[(r["finished_at"] or now) for r in rows]])
    span = max(t1 - t0, 60.0)
    t0 -= span * 0.02
    t1 += span * 0.02
    span = t1 - t0
    inner = WIDTH - LEFT - RIGHT

    def x_of(t: float) -> float:
        return LEFT + (t - t0) / span * inner

    marks = []
    for r in sorted(rows, key=lambda r: r["id"]):
        if r["env"] not in lane_y:
            continue
        end = r["finished_at"] or now
        kind = kind_of(r)
        took = format_duration(end - r["started_at"])
        who = r["actor"].partition(":")[2] or r["actor"]
        title = (
            f"deploy #{r['id']} {r['action']} {r['version'] or '?'} to {r['env']} by {who}"
            f" · {kind} · took {took}"
            + (f" · from {r['from_version']}" if r["from_version"] else "")
            + (f" · {r['error']}" if r["error"] else "")
        )
        x = x_of(r["started_at"])
        w = max(x_of(end) - x, 6.0)
        label = _short(r["version"])
        if _flag(kind) is not None:  # the word too, not only the shape
            label += " rolled back" if kind == "rollback" else f" {kind}"
        elif r["action"] == "review":  # a diff read, nothing applied (dashed outline)
            label += " review"
        marks.append(Mark(x, lane_y[r["env"]], w, kind, label, title, r["id"]))
    fmt = "%H:%M:%S" if span < 3600 else ("%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d")
    ticks = []
    for i in range(5):
        t = t0 + span * i / 4
        anchor = "start" if i == 0 else "end" if i == 4 else "middle"  # none cut at an edge
        ticks.append((x_of(t), datetime.fromtimestamp(t, UTC).strftime(fmt), anchor))
    marks = sorted(_place(marks), key=lambda m: m.deploy_id)
    return Chart(WIDTH, height, lanes, ticks, marks, LEFT, WIDTH - RIGHT)
