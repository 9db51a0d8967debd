"""A component's deploys over time, drawn server-side as SVG (no chart library, no script).

One lane per environment in promotion order; each deploy is a mark at its start time, as
wide as it took (at least a few pixels), labelled with its release number. Failed,
interrupted and rolled-back deploys are marked with a shape and a word, not colour alone.
Every mark has a `<title>` (who, version, how long, result) for hover and screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.core.text import format_duration
from bot.core.versions import parse_version

WIDTH = 960
LANE = 56
LEFT = 110
RIGHT = 20
TOP = 28


@dataclass(frozen=True)
class Mark:
    x: float
    y: float
    w: float
    kind: str  # done | failed | interrupted | rollback | running | refused
    label: str
    title: str
    deploy_id: int


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    lanes: list[tuple[str, float]]  # env, y
    ticks: list[tuple[float, str]]  # x, label
    marks: list[Mark]
    x0: float
    x1: float


def _short(version: str | None) -> str:
    v = parse_version(version or "")
    if v is None:
        return (version or "?")[:12]
    return f"#{v.raw.split('-', 1)[0].rsplit('.', 1)[-1]}"


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
        marks.append(Mark(x, lane_y[r["env"]], w, kind, _short(r["version"]), title, r["id"]))
    fmt = "%H:%M:%S" if span < 3600 else ("%m-%d %H:%M" if span < 3 * 86400 else "%Y-%m-%d")
    ticks = []
    for i in range(5):
        t = t0 + span * i / 4
        ticks.append((x_of(t), datetime.fromtimestamp(t, UTC).strftime(fmt)))
    return Chart(WIDTH, height, lanes, ticks, marks, LEFT, WIDTH - RIGHT)
