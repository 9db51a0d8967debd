"""`!status [component] [env]`: what is pinned (and, as sources are added, live) where."""

from __future__ import annotations

from bot.auth import Role
from bot.errors import UserError
from bot.status import status_lines
from commands.context import Context
from commands.parse import Invocation
from commands.registry import command


@command(
    "status",
    role=Role.anyone,
    usage="[component] [env]",
    summary="per component and environment: pinned version, locks",
    examples=[("!status", r"pinned|no components"), ("!status builds-api", r"builds-api")],
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
    if not components:
        return "no components configured"
    lines = await status_lines(ctx.services, components, envs)
    if len(lines) > 3:
        return "\n".join(lines[:2]) + f"\n… {len(lines) - 2} more: {cfg.bot.public_url}/status"
    return "\n".join(lines)
