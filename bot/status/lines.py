"""The status report in words: one compact line per component+environment.

Shared by `!status` (commands/status.py picks what fits in three lines) and `GET /status`
(every line). The facts come from `bot.status.board.StatusBoard`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.text import format_age, one_line
from bot.model.pathway import Pathway
from bot.status.board import NO_CLUSTER, Cell, ComponentStatus, Got, StatusBoard
from bot.store.acks import Ack
from bot.store.alerts import DELIBERATE, IMAGE_MISMATCH


def _versions(got: Got[list[str]]) -> str:
    return (",".join(got.value or []) or "none") if got.ok else got.unknown()


def cell_line(
    status: ComponentStatus, cell: Cell, step: Pathway | None, now: float, prefix: str = "!"
) -> str:
    """`builds-api tools: live X (seen 3h), as pinned · latest Y step 4/5 · 2/2 ready · ...`;
    no live part where the environment has no cluster."""
    parts = []
    live = cell.live
    seen = now - cell.live_since if cell.live_since is not None else 0.0
    age = f" (seen {format_age(seen)})" if seen >= 60 else ""
    if live.ok and cell.pinned.ok and live.value and live.value in (cell.pinned.value or []):
        parts.append(f"live {live.value}{age}, as pinned")
    else:
        if live.ok:
            parts.append(f"live {live.value or 'nothing'}{age}")
        elif live.error != NO_CLUSTER:
            parts.append(f"live {live.unknown()}")
        parts.append(f"pinned {_versions(cell.pinned)}")
    bump = status.bump
    if not bump.ok:
        parts.append(f"bump MR {bump.unknown()}")
    elif bump.value is not None and cell.bump_pinned is not None:
        parts.append(f"bump !{bump.value.iid}: {_versions(cell.bump_pinned)}")
    latest = status.latest
    if not status.tags.ok:
        parts.append(f"latest {status.tags.unknown()}")
    elif latest is not None:
        parts.append(f"latest {latest.raw}" + (f" step {step.k}/{step.n}" if step else ""))
    if (health := _health(cell)) is not None:
        parts.append(health)
    if cell.deploying is not None:
        deploy_id, version, state = cell.deploying
        parts.append(f"deploy #{deploy_id} {state} ({version})")
    if cell.lock is not None:
        parts.append(f"locked by {cell.lock.owner}: {one_line(cell.lock.reason, 60)}")
    if cell.ack is not None:
        parts.append(ack_part(cell.ack))
    if (alerts := _alerts(cell, now)) is not None:
        parts.append(alerts)
    trouble = cell.release_trouble
    if (step_text := _next_step(cell)) is not None:
        parts.append(step_text)
    if trouble is not None:  # last: it ends with the next command
        parts.append(f"{trouble.describe()}; next: {trouble.next_step(cell.component, cell.env)}")
    return f"{cell.component} {cell.env}: " + " · ".join(parts)


def ack_part(ack: Ack) -> str:
    """`acked 0.0.134-… (not deployed on purpose) by alice: local dev only`."""
    return (
        f"acked {ack.version} (not deployed on purpose) by {ack.author}: {one_line(ack.reason, 60)}"
    )


def _health(cell: Cell) -> str | None:
    """`2/3 ready, <the first problem> (+1 more)`; what cannot be read, said so."""
    health = cell.health
    if health.value is None:
        return f"health {health.unknown()}" if health.error != NO_CLUSTER else None
    h = health.value
    text = f"{h.ready}/{h.desired} ready"
    if h.problems:
        more = len(h.problems) - 1
        text += ", " + one_line(h.problems[0].describe(), 100)
        text += f" (+{more} more)" if more else ""
    return text


def _alerts(cell: Cell, now: float) -> str | None:
    """`ALERT: drift (2h), unapplied`; a drift alert the monitors have not cleared yet is
    not shown once live matches the pin."""
    alerts = [
        a for a in cell.alerts if not (a.kind == "drift" and cell.live.ok and not cell.drifted)
    ]
    if not alerts:
        return None
    ages = [f" ({a.age(now)})" if now - a.started >= 60 else "" for a in alerts]
    kinds = [
        a.kind
        + (" (rolled back on purpose)" if DELIBERATE in a.text else "")
        + (f" ({IMAGE_MISMATCH})" if a.kind == "image-digest" else "")
        for a in alerts
    ]
    return "ALERT: " + ", ".join(k + age for k, age in zip(kinds, ages, strict=True))


def _next_step(cell: Cell) -> str | None:
    """The planner's next step, when there is one and it is not a guess (no deploy in
    flight, no Helm release in trouble: that part names its own step)."""
    advice = cell.advice
    if cell.deploying is not None or cell.release_trouble is not None:
        return None
    if advice is not None and advice.command and advice.known:
        return advice.line()
    if cell.drifted and advice is None:
        return "live is not the pin (the next step could not be worked out)"
    return None


def cell_lines(
    statuses: Sequence[ComponentStatus], envs: Sequence[str], all_envs: Sequence[str], now: float,
    prefix: str = "!",
) -> list[tuple[Cell, str]]:  # fmt: skip
    """Each cell in `envs` with its line (the step counts every environment in `all_envs`)."""
    out = []
    for status in statuses:
        step = status.path(all_envs)
        for env in envs:
            cell = status.cells[env]
            out.append((cell, cell_line(status, cell, step, now, prefix)))
    return out


async def status_lines(board: StatusBoard, components: list[str], envs: list[str]) -> list[str]:
    """One line per component+environment (what `GET /status` shows)."""
    all_envs = board.services.config.env_names
    statuses = await board.gather(components, all_envs)
    prefix = str(board.services.config.bot.prefix)
    lines = cell_lines(statuses, envs, all_envs, board.clock(), prefix)
    return [board.services.redactor(line) for _, line in lines]
