"""The board's picture: every component × environment as cells a person reads at a glance.

Built from the same `StatusBoard` answers as `!status` (no second source of truth), plus the
newest pipeline per component, deploys in flight, deploy windows, locks, alerts and the
last SAL entries. Each cell carries a state word as well as a colour class, so the board
reads without colour. Plain values only; the templates lay them out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.core.tasks import within
from bot.core.text import format_age, format_duration, one_line
from bot.core.windows import in_window, next_opening, parse_windows
from bot.delivery.announcer import Announced
from bot.deploy.deployer import Deployer
from bot.deploy.records import deploy_rows
from bot.deploy.review import PendingReview, check_current, pending_reviews
from bot.model.planner import Advice
from bot.model.views import version_view
from bot.pipelines.announce import NewestPipeline, newest_pipelines
from bot.services import Services
from bot.status.board import NO_CLUSTER, Cell, ComponentStatus, Got, StatusBoard
from bot.status.lines import ack_part
from bot.store.alerts import DELIBERATE
from bot.store.freezes import Freeze
from bot.store.sal import SalEntry
from bot.web.news import NewsItem, recent_news

log = logging.getLogger("deploybot.web")
ALERT_KEY = "alert:"  # announcements of alerts (raised or resolved): their text is in the cell


@dataclass(frozen=True)
class NextView:
    """A cell's next step: the planner's words and the command to type (None: nothing to
    type, the words say why)."""

    text: str
    command: str | None = None
    gate: str | None = None


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
    next: NextView | None = None  # the planner's next step
    review: PendingReview | None = None  # a review waiting for its confirm
    anchor: str = ""  # the cell's id on the page (the banner links to it)
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
    alert_links: list[tuple[str, str]] = field(default_factory=list)  # (cell anchor, words)
    news: list[NewsItem] = field(default_factory=list)  # what was just announced (stored)


def _versions(got: Got[list[str]]) -> tuple[list[str], str | None]:
    return (got.value or [], None) if got.ok else ([], got.unknown())


def anchor_of(component: str, env: str) -> str:
    return f"cell-{component}-{env}"


def cell_view(
    status: ComponentStatus, cell: Cell, now: float, latest: Advice | None = None,
    review: PendingReview | None = None,
) -> CellView:  # fmt: skip
    """One cell; `latest`: the planner's step for the newest release (used where the
    environment's own pin has nothing to apply but the release has not reached it)."""
    pinned, pinned_unknown = _versions(cell.pinned)
    live = cell.live
    live_value = live.value if live.ok else None
    live_unknown = None if live.ok or live.error == NO_CLUSTER else live.unknown()
    if live.error == NO_CLUSTER:
        live_unknown = "no cluster"
    age = format_age(now - cell.live_since) if cell.live_since is not None else None
    health_text, health_ok = _health(cell)
    alerts = [f"{a.kind}: {' '.join(a.text.split())}" for a in cell.alerts]  # whole, wrapped
    lock = f"locked by {cell.lock.owner}: {one_line(cell.lock.reason, 80)}" if cell.lock else None
    if alerts:
        state, words = "alert", "ALERT " + ", ".join(a.kind for a in cell.alerts)
    elif not health_ok:
        state, words = "down", "unhealthy"
    elif review is not None and review.stale is None:
        state, words = "review", f"review #{review.id} waits for a confirm"
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
    contained = status.contains_latest.get(cell.env)
    step = next_step(cell, review, latest if state != "ok" and contained is False else None)
    if state == "ok" and step is not None and step.command is None:
        step = None  # a fine cell with nothing to type says nothing more
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
        bump=_bump(status, cell),
        health=health_text,
        health_ok=health_ok,
        lock=lock,
        alerts=alerts,
        deploying=cell.deploying,
        next=step,
        review=review,
        anchor=anchor_of(cell.component, cell.env),
        ack=ack_part(cell.ack) if cell.ack is not None else None,
    )


def _bump(status: ComponentStatus, cell: Cell) -> str | None:
    if status.bump.ok and status.bump.value is not None and cell.bump_pinned is not None:
        bump_pins, why = _versions(cell.bump_pinned)
        return f"!{status.bump.value.iid}: " + (", ".join(bump_pins) or why or "none")
    return None


def _health(cell: Cell) -> tuple[str | None, bool]:
    """The health in words, and whether it is fine."""
    if cell.health.value is not None:
        h = cell.health.value
        text = f"{h.ready}/{h.desired} ready"
        if h.problems:
            text += ", " + one_line(h.problems[0].describe(), 100)
        return text, h.ok
    if cell.health.error not in (None, NO_CLUSTER):
        return f"health {cell.health.unknown()}", False
    return None, True


def next_step(
    cell: Cell, review: PendingReview | None = None, latest: Advice | None = None
) -> NextView | None:
    """The cell's next step, from the planner (the same advice `!status` and the alerts
    give): a waiting review's confirm first; then the environment's own step; where that
    has nothing to type, the newest release's step (unless it was rolled back on purpose)."""
    if cell.deploying is not None:
        deploy_id, _, state = cell.deploying
        return NextView(f"deploy #{deploy_id} is {state}: follow it on its page")
    if review is not None and review.stale is None:
        gate = f"{review.who_confirms} than {review.asked_by}, until {review.until_text()}"
        if review.who_confirms != "another deployer":
            gate = f"a deployer, until {review.until_text()}"
        return NextView("", review.confirm, gate)  # the review's own line says what
    advice = cell.advice
    if advice is not None and advice.command and advice.known:
        return NextView(advice.text, advice.command, advice.gate)
    if any(DELIBERATE in a.text for a in cell.alerts):
        return NextView(f"nothing to do: {DELIBERATE}")
    if latest is not None and latest.command:
        return NextView(latest.text, latest.command, latest.gate)
    if advice is not None:
        return NextView(advice.text)
    if cell.drifted:
        return NextView("live is not the pin (the next step could not be worked out)")
    return None


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
    latest_advice: Advice | None = None,
    reviews: dict[tuple[str, str], PendingReview] | None = None,
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
        cells=[
            cell_view(
                status,
                status.cells[e],
                now,
                latest_advice,
                (reviews or {}).get((status.component, e)),
            )
            for e in envs
        ],  # fmt: skip
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


def row_news(said: Iterable[Announced]) -> dict[str, Announced]:
    """The newest announcement per component that is not an alert (alerts show once, in
    their cell)."""
    out: dict[str, Announced] = {}
    for one in said:
        if one.component and not (one.key or "").startswith(ALERT_KEY):
            out[one.component] = one
    return out


async def _latest_advice(board: StatusBoard, status: ComponentStatus) -> Advice | None:
    """The planner's step for the component's newest release (what the undeployed alert
    says), bounded like every source; None when it cannot be worked out in time."""
    latest = status.latest
    if latest is None or set(status.cells) != set(board.services.config.env_names):
        return None
    if False not in status.contains_latest.values():  # it runs everywhere (or unknown)
        return None
    prefix = str(board.services.config.bot.prefix)
    try:
        seen = await board.seen(status)
        view = await within(
            version_view(board.model, status.component, latest.raw, prefix=prefix, seen=seen),
            board.timeout,
        )
    except Exception:  # a source that fails or hangs: the cell shows its own step only
        log.warning("next step of %s %s not worked out", status.component, latest.raw,
                    exc_info=True)  # fmt: skip
        return None
    return view.advice


async def build_board(
    services: Services,
    board: StatusBoard,
    news: dict[str, Announced],
    components: list[str] | None = None,
    freezes: Sequence[Freeze] = (),
    deployer: Deployer | None = None,
) -> BoardView:
    """The board; with `deployer`, each waiting review is checked against what an apply
    would deploy now (a review the pin has moved past is shown as such, not as confirmable)."""
    cfg = services.config
    envs = cfg.env_names
    names = components if components is not None else list(cfg.components)
    statuses = await board.gather(names, envs)
    now = board.clock()
    pipelines = await newest_pipelines(services.store)
    reviews = await pending_reviews(services.store, cfg, time.time())
    if deployer is not None and reviews:
        checked = await asyncio.gather(
            *(check_current(deployer, r, board.timeout) for r in reviews.values())
        )
        reviews = dict(zip(reviews, checked, strict=True))
    steps = await asyncio.gather(*(_latest_advice(board, s) for s in statuses))
    rows = [
        row_view(s, envs, now, pipelines, news, step, reviews)
        for s, step in zip(statuses, steps, strict=True)
    ]
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
    links = [
        (c.anchor, f"{r.component} {c.env}: {a.split(':', 1)[0]}")
        for r in rows for c in r.cells for a in c.alerts
    ]  # fmt: skip
    attention = sum(1 for r in rows for c in r.cells if c.state != "ok")
    return BoardView(
        envs=envs,
        rows=rows,
        alerts=[words for _, words in links],
        windows=window_views(services, datetime.now(UTC)),
        in_flight=flying,
        sal=await services.sal.query(limit=5),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        healthy=sum(len(r.cells) for r in rows) - attention,
        attention=attention,
        locks=[lk.describe() for lk in await services.locks.all()],
        freezes=[f.describe() for f in freezes],
        alert_links=links,
        news=await recent_news(services.store),
    )
