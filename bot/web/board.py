"""The board's picture: every component × environment as cells a person reads at a glance.

Built from the same `StatusBoard` answers as `!status` (no second source of truth), plus the
newest pipeline per component, deploys in flight, deploy windows, locks, alerts and the
last SAL entries. Each cell carries a state word as well as a colour class, so the board
reads without colour. Plain values only; the templates lay them out.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.core.text import format_age, format_duration, one_line
from bot.core.windows import in_window, next_opening, parse_windows
from bot.delivery.announcer import Announced
from bot.deploy.records import deploy_rows
from bot.pipelines.announce import NewestPipeline, newest_pipelines
from bot.services import Services
from bot.status.board import NO_CLUSTER, Cell, ComponentStatus, Got, StatusBoard
from bot.status.lines import ack_part
from bot.store.freezes import Freeze
from bot.store.sal import SalEntry


@dataclass
class CellView:
    env: str
    state: str  # ok | drift | deploying | locked | alert | unknown | down
    words: str  # the state in words (readable without colour)
    live: str | None
    live_age: str | None
    live_unknown: str | None
    pinned: list[str]
    pinned_unknown: str | None
    as_pinned: bool
    bump: str | None
    health: str | None
    health_ok: bool
    lock: str | None
    alerts: list[str]
    deploying: tuple[int, str, str] | None
    next: str | None = None  # the planner's next step (as `!status` says it)
    ack: str | None = None  # a release acked as not deployed here on purpose


@dataclass
class RowView:
    component: str
    latest: str | None
    latest_unknown: str | None
    step: str | None  # "step 3 of 5"
    step_k: int
    step_n: int
    step_label: str
    pipeline: NewestPipeline | None
    pipeline_text: str | None
    news: str | None
    cells: list[CellView]


@dataclass
class WindowView:
    env: str
    windows: str
    open: bool
    note: str


@dataclass
class InFlightView:
    id: int
    component: str
    env: str
    version: str
    state: str
    actor: str
    elapsed: str


@dataclass
class BoardView:
    envs: list[str]
    rows: list[RowView]
    alerts: list[str]
    windows: list[WindowView]
    in_flight: list[InFlightView]
    sal: list[SalEntry]
    generated: str
    healthy: int = 0
    attention: int = 0
    locks: list[str] = field(default_factory=list)
    freezes: list[str] = field(default_factory=list)  # deploy freezes in force


def _versions(got: Got[list[str]]) -> tuple[list[str], str | None]:
    return (got.value or [], None) if got.ok else ([], got.unknown())


def cell_view(status: ComponentStatus, cell: Cell, now: float) -> CellView:
    pinned, pinned_unknown = _versions(cell.pinned)
    live = cell.live
    live_value = live.value if live.ok else None
    live_unknown = None if live.ok or live.error == NO_CLUSTER else live.unknown()
    if live.error == NO_CLUSTER:
        live_unknown = "no cluster"
    age = format_age(now - cell.live_since) if cell.live_since is not None else None
    bump = None
    if status.bump.ok and status.bump.value is not None and cell.bump_pinned is not None:
        bump_pins, why = _versions(cell.bump_pinned)
        bump = f"!{status.bump.value.iid}: " + (", ".join(bump_pins) or why or "none")
    health_text, health_ok = None, True
    if cell.health.value is not None:
        h = cell.health.value
        health_ok = h.ok
        health_text = f"{h.ready}/{h.desired} ready"
        if h.problems:
            health_text += ", " + one_line(h.problems[0].describe(), 100)
    elif cell.health.error not in (None, NO_CLUSTER):
        health_text, health_ok = f"health {cell.health.unknown()}", False
    alerts = [f"{a.kind}: {one_line(a.text, 120)}" for a in cell.alerts]
    lock = f"locked by {cell.lock.owner}: {one_line(cell.lock.reason, 80)}" if cell.lock else None
    if alerts:
        state, words = "alert", "ALERT " + ", ".join(a.kind for a in cell.alerts)
    elif not health_ok:
        state, words = "down", "unhealthy"
    elif cell.deploying is not None:
        state, words = "deploying", f"deploying #{cell.deploying[0]}"
    elif cell.drifted:
        state, words = "drift", "drift: live is not pinned"
    elif lock:
        state, words = "locked", "locked"
    elif pinned_unknown or live_unknown not in (None, "no cluster"):
        state, words = "unknown", "unknown"
    else:
        state, words = "ok", "as pinned" if live_value else "ok"
    return CellView(
        env=cell.env,
        state=state,
        words=words,
        live=live_value,
        live_age=age,
        live_unknown=live_unknown,
        pinned=pinned,
        pinned_unknown=pinned_unknown,
        as_pinned=bool(live_value and live_value in pinned),
        bump=bump,
        health=health_text,
        health_ok=health_ok,
        lock=lock,
        alerts=alerts,
        deploying=cell.deploying,
        next=_next(cell),
        ack=ack_part(cell.ack) if cell.ack is not None else None,
    )


def _next(cell: Cell) -> str | None:
    """The planner's step for this cell: the same words `!status` and the alerts use."""
    advice = cell.advice
    if advice is None or advice.command is None or not advice.known or cell.deploying:
        return None
    return advice.line()


def pipeline_text(p: NewestPipeline | None) -> str | None:
    if p is None:
        return None
    where = p.ref or (p.sha or "")[:8]
    if p.stage and p.status not in ("success", "failed", "canceled", "skipped"):
        return f"pipeline {p.pipeline_id} on {where}: stage {p.stage}"
    return f"pipeline {p.pipeline_id} on {where}: {p.status}"


def row_view(
    status: ComponentStatus,
    envs: list[str],
    now: float,
    pipelines: dict[str, NewestPipeline],
    news: dict[str, Announced],
) -> RowView:
    path = status.path(envs)
    latest = status.latest
    said = news.get(status.component)
    return RowView(
        component=status.component,
        latest=latest.raw if latest else None,
        latest_unknown=None if status.tags.ok else status.tags.unknown(),
        step=f"step {path.k} of {path.n}" if path else None,
        step_k=path.k if path else 0,
        step_n=path.n if path else 0,
        step_label=(path.current.label if path and path.current else ""),
        pipeline=pipelines.get(status.component),
        pipeline_text=pipeline_text(pipelines.get(status.component)),
        news=said.text if said else None,
        cells=[cell_view(status, status.cells[e], now) for e in envs],
    )


def window_views(services: Services, now: datetime) -> list[WindowView]:
    out = []
    for env in services.config.environments:
        if not env.windows:
            continue
        windows = parse_windows(env.windows)
        is_open = in_window(windows, now)
        opening = next_opening(windows, now)
        note = (
            "open now"
            if is_open
            else "closed" + (f"; opens {opening.strftime('%a %H:%M')} UTC" if opening else "")
        )
        out.append(WindowView(env.name, ", ".join(env.windows), is_open, note))
    return out


async def build_board(
    services: Services,
    board: StatusBoard,
    news: dict[str, Announced],
    components: list[str] | None = None,
    freezes: Sequence[Freeze] = (),
) -> BoardView:
    cfg = services.config
    envs = cfg.env_names
    names = components if components is not None else list(cfg.components)
    statuses = await board.gather(names, envs)
    now = board.clock()
    pipelines = await newest_pipelines(services.store)
    rows = [row_view(s, envs, now, pipelines, news) for s in statuses]
    flying = [
        InFlightView(
            d["id"],
            d["component"],
            d["env"],
            d["version"] or "?",
            d["state"],
            d["actor"],
            format_duration(time.time() - d["started_at"]),
        )
        for d in await deploy_rows(services.store, active=True, limit=50)
    ]
    alerts = [f"{r.component} {c.env}: {a}" for r in rows for c in r.cells for a in c.alerts]
    attention = sum(1 for r in rows for c in r.cells if c.state != "ok")
    return BoardView(
        envs=envs,
        rows=rows,
        alerts=alerts,
        windows=window_views(services, datetime.now(UTC)),
        in_flight=flying,
        sal=await services.sal.query(limit=5),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        healthy=sum(len(r.cells) for r in rows) - attention,
        attention=attention,
        locks=[lk.describe() for lk in await services.locks.all()],
        freezes=[f.describe() for f in freezes],
    )
