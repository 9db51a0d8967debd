"""`!prune plan <component>`: the registry artifacts that would be safe to delete, with the
reason and size of each (`bot.monitors.prune`); read-only, and remembered.
`!prune apply <component>` (admin, with `prune.enabled: true`) deletes exactly the versions of
that plan that are still safe, one SAL entry per deleted tag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.cluster.registry import Registry, RegistryError
from bot.config.auth import Role
from bot.core.errors import UserError
from bot.monitors.protect import artifact_repos
from bot.monitors.prune import KEEP_NEWEST, PrunePlan, PruneResult, apply_prune, measure, plan_prune
from bot.store.pruneplans import PrunePlans
from bot.store.sal import SalEntry, actor_name
from commands.parse import Invocation
from commands.spec import Context, command

PLAN_VALID = timedelta(hours=24)  # an older plan is not applied: plan again


@command(
    "prune",
    role=Role.anyone,
    usage="plan <component> | apply <component>",
    summary=f"registry artifacts safe to delete (not live, pinned or previous anywhere, not the"
    f" newest prune.keep ({KEEP_NEWEST}), older than prune.grace) with sizes; 'apply' (admin,"
    " prune.enabled) deletes exactly the last plan's versions that are still safe",
    examples=[
        ("!prune plan builds-api", r"prune plan for builds-api|no registry configured"),
        ("!prune apply builds-api", r"prune apply is off|no registry configured|no plan"),
    ],
)
async def prune(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) != 2 or inv.args[0] not in ("plan", "apply"):
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}; nothing deleted")
    component = ctx.component(inv.args[1])
    if inv.args[0] == "apply":
        return await _apply(ctx, component)
    registry, repos = _registry(ctx, component)
    plan, _ = await _plan(ctx, component, registry, repos)
    await PrunePlans(ctx.services.store).save(
        component, [c.version for c in plan.safe], datetime.now(UTC), actor_name(ctx.actor)
    )
    diffs = ctx.services.diffs
    link = await diffs.save(plan.page()) if diffs is not None else None
    return plan.line(link)


def _registry(ctx: Context, component: str) -> tuple[Registry, list[str]]:
    registry = ctx.services.registry
    if registry is None:
        raise UserError("no registry configured (registry in the config); nothing to plan")
    repos = artifact_repos(ctx.config, component)
    if not repos:
        raise UserError(f"{component} has no image or chart in our registry; nothing to plan")
    return registry, repos


async def _plan(
    ctx: Context, component: str, registry: Registry, repos: list[str]
) -> tuple[PrunePlan, dict[str, list[str]]]:
    """The plan from what the registry holds and what runs, pins and ran before, now."""
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
    cfg = ctx.config.prune
    plan = plan_prune(
        component, tags, in_use, datetime.now(UTC), keep_newest=cfg.keep, grace_days=cfg.grace_days
    )
    try:
        await measure(registry, repos, plan)
    except RegistryError as exc:
        raise UserError(f"cannot measure {component}'s artifacts: {exc}; nothing listed") from None
    return plan, in_use


async def _apply(ctx: Context, component: str) -> str:
    for env in ctx.config.env_names:
        ctx.require(Role.admin, component, env)
    if not ctx.config.prune.enabled:
        raise UserError(
            "prune apply is off: set prune.enabled: true in the config to let the bot delete"
            " registry artifacts; nothing deleted"
        )
    registry, repos = _registry(ctx, component)
    saved = await PrunePlans(ctx.services.store).get(component)
    if saved is None:
        raise UserError(
            f"no plan for {component}: run !prune plan {component} first; nothing deleted"
        )
    if datetime.now(UTC) - saved.made_at > PLAN_VALID:
        raise UserError(
            f"the plan for {component} is older than 24 h: run !prune plan {component} again;"
            " nothing deleted"
        )
    if not saved.versions:
        return f"the plan for {component} deletes nothing; nothing deleted"
    now_plan, in_use = await _plan(ctx, component, registry, repos)  # the re-check
    try:
        todo, kept = await apply_prune(registry, repos, saved.versions, now_plan, in_use)
    except RegistryError as exc:
        raise UserError(f"cannot read {component}'s artifacts: {exc}; nothing deleted") from None
    result = PruneResult(kept=kept)
    for item in todo:
        try:
            gone = await registry.delete_manifest(item.repo, item.digest)
        except RegistryError as exc:
            result.kept.append((item.version, f"delete failed: {exc}"))
            break  # the registry refuses: stop here (what was deleted is in the SAL)
        if gone:
            result.deleted.append(item)
        await ctx.services.sal.record(
            SalEntry(
                actor=ctx.actor, action="prune", component=component,
                message=f"{actor_name(ctx.actor)}: pruned {item.repo}:{item.tag}"
                f" ({item.digest}) of {component} {item.version} from the registry",
                from_version=item.version, result="deleted" if gone else "already gone",
            )
        )  # fmt: skip
    await PrunePlans(ctx.services.store).forget(component)
    return result.line(component, len(saved.versions))
