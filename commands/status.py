"""`!status [component] [env]`: what runs where, and what needs attention.

With arguments: one compact line per component+environment. Without: only the pairs that
need attention (an alert, drift, a lock, unhealthy pods, an unknown source) and a count of
the healthy ones. At most three lines; the rest is linked to `GET /status`.
"""

from __future__ import annotations

from bot.config.auth import Role
from bot.core.errors import UserError
from bot.status.board import NO_CLUSTER
from bot.status.lines import cell_lines
from commands.parse import Invocation
from commands.spec import Context, command

MAX_LINES = 3
FIRST_CHECK_WAIT = 3.0  # seconds `!status` waits for the monitors' first check after start


@command(
    "status",
    role=Role.anyone,
    usage="[component] [env]",
    summary="per component and environment: pinned, live, latest built, step k/n, health, "
    "bump MR, lock, alerts",
    examples=[
        ("!status", r"need attention|healthy|unknown|no components"),
        ("!status builds-api", r"builds-api toolsbeta: .*pinned"),
        ("!status builds-api prod", r"unknown environment 'prod'; environments: toolsbeta, tools"),
    ],
)
async def status(ctx: Context, inv: Invocation) -> str:
    cfg = ctx.config
    if len(inv.args) > 2:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    components = list(cfg.components)
    envs = cfg.env_names
    if inv.args:
        components = [ctx.component(inv.args[0])]
    if len(inv.args) == 2:
        envs = [ctx.env(inv.args[1])]
    if not components or not envs:
        return "no components or environments configured"
    await ctx.monitors.wait_first_check(FIRST_CHECK_WAIT)
    frozen = [f for f in await ctx.deployer.freezes.active(None) if any(map(f.covers, envs))]
    banner = [f"FROZEN: {frozen[-1].describe()}"] if frozen else []
    if len(frozen) > 1:
        banner[0] += f" (and {len(frozen) - 1} more freeze{'s' if len(frozen) > 2 else ''})"
    return "\n".join(banner + await _cells(ctx, inv, components, envs, MAX_LINES - len(banner)))


async def _cells(
    ctx: Context, inv: Invocation, components: list[str], envs: list[str], max_lines: int
) -> list[str]:
    cfg = ctx.config
    board = ctx.board
    statuses = await board.gather(components, cfg.env_names)
    cells = cell_lines(statuses, envs, cfg.env_names, board.clock(), ctx.prefix)
    more_at = f"{cfg.bot.public_url.rstrip('/')}/status"
    if inv.args:
        lines = [line for _, line in cells]
        if len(lines) > max_lines:
            keep = max_lines - 1
            lines = lines[:keep] + [f"… {len(lines) - keep} more: {more_at}"]
        return lines
    attention = [line for cell, line in cells if cell.needs_attention]
    calm = [cell for cell, _ in cells if not cell.needs_attention]
    blind = sum(1 for cell in calm if cell.health.error == NO_CLUSTER)
    healthy = len(calm) - blind
    counts = ([f"{healthy} healthy"] if healthy or not blind else []) + (
        [f"{blind} health unknown (no cluster configured)"] if blind else []
    )
    if not attention:
        return [f"nothing needs attention: {' · '.join(counts)}; details: {more_at}"]
    shown = attention[: max_lines - 1]
    rest = len(attention) - len(shown)
    tail = f"{rest} more need attention · " if rest else ""
    return shown + [f"{tail}{' · '.join(counts)}; details: {more_at}"]
