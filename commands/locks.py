"""`!lock` and `!unlock`: block deploys of a component (in one environment or all).

A lock names its owner and reason, is persisted (`bot.store.locks`), shows in `!status` and makes
every deploy by someone else refuse with that reason. Only the owner or an admin unlocks.
Both are mutating actions, so both write a SAL entry.
"""

from __future__ import annotations

from bot.config.auth import Role, same_person
from bot.core.errors import Refused, UserError
from bot.store.locks import ALL_ENVS, Lock
from bot.store.sal import SalEntry, actor_name
from commands.parse import Invocation
from commands.spec import Context, command

MAX_REASON = 300


def _target(ctx: Context, args: list[str]) -> tuple[str, str | None, list[str]]:
    """`<component> [env] rest...` -> (component, env or None, rest)."""
    if not args:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(args[0])
    if len(args) > 1 and args[1] in ctx.config.env_names:
        return component, args[1], args[2:]
    return component, None, args[1:]


def _require_everywhere(ctx: Context, role: Role, component: str, env: str | None) -> None:
    for name in [env] if env else ctx.config.env_names:
        ctx.require(role, component, name)


async def _exact(ctx: Context, component: str, env: str | None) -> Lock | None:
    wanted = env or ALL_ENVS
    return next(
        (
            lk
            for lk in await ctx.services.locks.all()
            if (lk.component, lk.env) == (component, wanted)
        ),
        None,
    )


async def _record(ctx: Context, action: str, component: str, env: str | None, text: str) -> None:
    env_cfg = ctx.config.env(env) if env else None
    await ctx.services.sal.record(
        SalEntry(
            actor=ctx.actor, action=action, message=f"{actor_name(ctx.actor)}: {text}",
            component=component, env=env, result=action + "ed",
            sal_project=env_cfg.sal_project if env_cfg else None,
        )
    )  # fmt: skip


@command(
    "lock",
    role=Role.deployer,
    usage="<component> [env] <reason>",
    summary="block deploys of a component (in one environment, or all) until !unlock",
    examples=[("!lock builds-api tools cluster upgrade T123", r"locked builds-api in tools")],
)
async def lock(ctx: Context, inv: Invocation) -> str:
    component, env, words = _target(ctx, inv.args)
    reason = " ".join(words + inv.tasks)[:MAX_REASON]
    if not words:
        raise UserError("give a reason, e.g. !lock builds-api tools cluster upgrade")
    _require_everywhere(ctx, Role.deployer, component, env)
    existing = await _exact(ctx, component, env)
    if existing is not None:
        raise UserError(f"already locked: {existing.describe()}")
    await ctx.services.locks.add(component, env, ctx.actor, reason)
    where = env or "all environments"
    await _record(ctx, "lock", component, env, f"locked {component} in {where}: {reason}")
    return (
        f"locked {component} in {where}: {reason} (!unlock {component}{' ' + env if env else ''})"
    )


@command(
    "unlock",
    role=Role.deployer,
    usage="<component> [env]",
    summary="remove a lock (its owner or an admin)",
    examples=[("!unlock builds-api tools", r"not locked|unlocked")],
)
async def unlock(ctx: Context, inv: Invocation) -> str:
    component, env, rest = _target(ctx, inv.args)
    if rest:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    where = env or "all environments"
    existing = await _exact(ctx, component, env)
    if existing is None:
        held = [lk for lk in await ctx.services.locks.all() if lk.component == component]
        if not held:
            return f"{component} is not locked " + (f"in {env}" if env else "anywhere")
        hints = " · ".join(
            f"{lk.describe()} ({ctx.prefix}unlock {component}"
            + ("" if lk.env == ALL_ENVS else f" {lk.env}")
            + ")"
            for lk in held
        )
        return f"{component} is not locked in {where}; {hints}"
    _require_everywhere(ctx, Role.deployer, component, env)
    if not same_person(ctx.config.people, existing.owner, ctx.actor):
        try:
            _require_everywhere(ctx, Role.admin, component, env)
        except Refused:
            raise Refused(
                f"locked by {actor_name(existing.owner)}; only they or an admin can unlock"
            ) from None
    await ctx.services.locks.remove(component, env)
    await _record(ctx, "unlock", component, env,
                  f"unlocked {component} in {where} (was: {existing.reason})")  # fmt: skip
    return f"unlocked {component} in {where}"
