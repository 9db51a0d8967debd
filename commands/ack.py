"""`!ack <component> <env> <version> <reason> [T123]`: a release deliberately not deployed.

The ack is stored (`bot.store.acks`), one per component and environment. It covers that
release and every older one: the "undeployed" alert stays silent for them and the planner
advises no deploy of them there, until a newer release appears. It shows in `!status` and on
the board, and `!ack <component> <env> remove` undoes it. Both write a SAL entry.
"""

from __future__ import annotations

import re

from bot.config.auth import Role
from bot.core.errors import UserError
from bot.core.versions import RefError
from bot.store.acks import Acks
from bot.store.sal import SalEntry, actor_name
from commands.parse import Invocation
from commands.spec import Context, command

MAX_REASON = 300
# a reason is free text, but never anything a shell (or a log reader) would act on
_SHELL = re.compile(r"[`$;|&<>\\{}]")


def _reason(words: list[str]) -> str:
    reason = " ".join(words)
    if not reason:
        raise UserError(
            "give a reason, e.g. !ack builds-api tools 0.0.134-… local development only;"
            " nothing changed"
        )
    if bad := sorted(set(_SHELL.findall(reason))):
        raise UserError(
            f"the reason must not contain shell characters ({' '.join(bad)}); nothing changed"
        )
    if len(reason) > MAX_REASON:
        raise UserError(f"the reason is over {MAX_REASON} characters; nothing changed")
    return reason


async def _record(ctx: Context, action: str, component: str, env: str, version: str,
                  text: str, tasks: list[str]) -> None:  # fmt: skip
    env_cfg = ctx.config.env(env)
    await ctx.services.sal.record(
        SalEntry(
            actor=ctx.actor, action=action, message=f"{actor_name(ctx.actor)}: {text}",
            component=component, env=env, to_version=version, tasks=tasks,
            result="acked" if action == "ack" else "removed",
            sal_project=env_cfg.sal_project if env_cfg else None,
        )
    )  # fmt: skip


@command(
    "ack",
    role=Role.deployer,
    usage="<component> <env> <version> <reason> [T123] | <component> <env> remove",
    summary="a release is deliberately not deployed to <env>: no 'undeployed' alert and no"
    " advice to deploy it there, until a newer release appears; 'remove' undoes it",
    examples=[
        (
            "!ack builds-api tools latest local development only",
            r"acked builds-api 0\.0\.134 \(43712340\) as not deployed to tools",
        ),
        ("!ack builds-api tools remove", r"no ack|removed the ack"),
    ],
)
async def ack(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) < 3:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(inv.args[0])
    env = ctx.env(inv.args[1])
    ctx.require(Role.deployer, component, env)
    acks = Acks(ctx.services.store)
    if inv.args[2] == "remove":
        if len(inv.args) > 3:
            raise UserError(f"usage: {ctx.prefix}ack {component} {env} remove; nothing changed")
        gone = await acks.remove(component, env)
        if gone is None:
            return f"no ack for {component} in {env}; nothing changed"
        text = f"removed the ack of {component} {gone.version} in {env} (was: {gone.reason})"
        await _record(ctx, "unack", component, env, gone.version, text, inv.tasks)
        return f"{text}; the undeployed alert may return"
    reason = _reason(inv.args[3:])
    try:
        version = await ctx.model.resolve(component, inv.args[2], [env])
    except RefError as exc:
        raise UserError(f"{exc}; nothing changed") from None
    if not version.is_release:
        raise UserError(f"{version.raw} is not a release; only releases are acked; nothing changed")
    made, replaced = await acks.set(
        component, env, version.raw, reason, actor_name(ctx.actor), inv.tasks
    )
    text = f"acked {component} {version.raw} as not deployed to {env} on purpose: {reason}"
    if replaced is not None:
        text += f" (replaces the ack of {replaced.version})"
    await _record(ctx, "ack", component, env, version.raw, text, inv.tasks)
    return (
        f"{text}; no undeployed alert for it or older releases until a newer one appears"
        f" ({ctx.prefix}ack {component} {env} remove)"
    )
