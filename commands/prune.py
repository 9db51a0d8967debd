"""`!prune plan <component>`: the registry artifacts that would be safe to delete, with the
reason for each (`bot.monitors.prune`). Read-only: it lists, it never deletes."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.cluster.registry import RegistryError
from bot.config.auth import Role
from bot.core.errors import UserError
from bot.monitors.protect import artifact_repos
from bot.monitors.prune import GRACE_DAYS, KEEP_NEWEST, plan_prune
from commands.parse import Invocation
from commands.spec import Context, command


@command(
    "prune",
    role=Role.anyone,
    usage="plan <component>",
    summary=f"registry artifacts safe to delete: not live, pinned or previous anywhere, not the"
    f" newest {KEEP_NEWEST}, older than {GRACE_DAYS} days (read-only: nothing is deleted)",
    examples=[("!prune plan builds-api", r"prune plan for builds-api|no registry configured")],
)
async def prune(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) != 2 or inv.args[0] != "plan":
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)} (only a plan: nothing is deleted)")
    component = ctx.component(inv.args[1])
    registry = ctx.services.registry
    if registry is None:
        raise UserError("no registry configured (registry in the config); nothing to plan")
    repos = artifact_repos(ctx.config, component)
    if not repos:
        raise UserError(f"{component} has no image or chart in our registry; nothing to plan")
    tags: set[str] = set()
    try:
        for repo in repos:
            tags.update(t.replace("_", "+") for t in await registry.tags(repo))
    except RegistryError as exc:
        raise UserError(f"cannot list {component}'s artifacts: {exc}; nothing listed") from None
    in_use, unknown = await ctx.monitors.in_use(component)
    if unknown:
        raise UserError(
            f"cannot tell what {', '.join(unknown)} runs, pins or ran before; nothing listed"
            f" (check !status {component})"
        )
    plan = plan_prune(component, tags, in_use, datetime.now(UTC))
    diffs = ctx.services.diffs
    link = await diffs.save(plan.page()) if diffs is not None else None
    return plan.line(link)
