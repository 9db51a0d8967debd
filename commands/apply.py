"""`!apply` and `!rollback`: deploy what the control repo pins, or go back to a version.

The work is `bot.deploy.deployer.Deployer`; these handlers parse, authorize (a refusal is also a SAL
entry, because "who tried to deploy what" is part of the log), and, for a rollback, check the
target's artifacts and re-pin it through the bump path before applying it.
"""

from __future__ import annotations

from bot.config.auth import Role
from bot.core.errors import Refused, UserError
from bot.core.versions import RefError
from bot.deploy import review
from bot.deploy.model import Action, DeployOutcome, DeployRequest
from bot.model.ancestry import Direction
from bot.model.planner import plan_env
from commands.deploy import authorize_pin, bump_reply
from commands.parse import Invocation
from commands.queue import maybe_queue
from commands.spec import Context, command


async def authorize(ctx: Context, req: DeployRequest, needed: Role = Role.deployer) -> None:
    """The role for component+env (admin for --force); refusals are recorded in the SAL."""
    deployer = ctx.deployer
    try:
        ctx.require(needed, req.component, req.env)
        if req.force:
            try:
                ctx.require(Role.admin, req.component, req.env)
            except Refused as exc:
                raise Refused(f"--force: {exc}") from None
    except Refused as exc:
        await deployer.report.refuse(req, str(exc))  # with the precise action (rollback-emergency)
        exc.logged = True
        raise


def reply(ctx: Context, component: str, outcome: DeployOutcome) -> str | None:
    """The result line; a room that already sees the deploy's announcements gets none."""
    if outcome.state == "refused":
        raise UserError(outcome.line)
    if outcome.state == "nothing":  # no deploy ran, so nothing was announced
        return outcome.line
    if ctx.sees_announcements(component):
        return None
    return outcome.line


@command(
    "apply",
    role=Role.deployer,
    usage='<component> <env> [confirm] [--queue] [--emergency] [--force ["reason"]] [T123]',
    summary="deploy what is pinned for <env> (bump branch before merge, else the target branch);"
    " on a `review: true` environment it runs the diff only, and `confirm` (a second deployer)"
    " applies the reviewed commit; --queue waits for a busy or locked target; --emergency goes"
    " through a deploy freeze",
    examples=[("!apply builds-api toolsbeta", r"deploy #\d+ done: ")],
    flags=["force", "queue", "emergency"],
)
async def apply(ctx: Context, inv: Invocation) -> str | None:
    args = inv.args
    force = "force" in inv.flags
    confirm = len(args) == 3 and args[2] == "confirm"
    if len(args) != 2 and not confirm and not (force and len(args) > 2):
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component, env = ctx.component(args[0]), ctx.env(args[1])
    req = DeployRequest(component, env, ctx.actor, Action.APPLY, tuple(inv.tasks), force)
    req.emergency = "emergency" in inv.flags
    req.reason = "" if confirm else " ".join(args[2:])[:300]
    env_cfg = ctx.config.env(env)
    await authorize(ctx, req)
    if (queued := await maybe_queue(ctx, inv, component, env)) is not None:
        return queued
    if confirm:  # a review waits: on a `review: true` env, or production crossing a script
        return reply(ctx, component, await review.confirm(ctx.deployer, req))
    if not req.force and (nothing := await _nothing_to_apply(ctx, component, env)):
        return nothing
    production = ctx.config.env_names[-1] == env
    if (env_cfg is not None and env_cfg.review) or (
        production and await review.crosses_scripts(ctx.deployer, req)
    ):
        return reply(ctx, component, await review.review(ctx.deployer, req))
    return reply(ctx, component, await ctx.deployer.apply(req))


async def _nothing_to_apply(ctx: Context, component: str, env: str) -> str | None:
    """`nothing to apply: tools already runs X` when the pin runs and nothing is unapplied
    (a reviewed environment then runs no review either)."""
    env_cfg = ctx.config.env(env)
    bumper = ctx.deployer.bumper
    if bumper is not None and env_cfg is not None and env_cfg.deploy_before_merge:
        if await bumper.forge.open_bump(component) is not None:
            return None  # the open bump MR's pin is what applies, not main's
    if bumper is not None:  # an apply acts on the pin as it is now, not as cached for reads
        await bumper.forge.refresh(max_age=0.0)
    facts = await ctx.model.facts(component, env)
    if facts.pin_move != Direction.SAME or facts.unapplied or facts.trouble:
        return None
    return plan_env(facts, prefix=ctx.prefix).line()


async def _back_only(ctx: Context, req: DeployRequest, target: str) -> Direction:
    """`!rollback … to <ref>` goes back only (from what runs, else the pin); forward is
    `!deploy`'s, through every gate. Refused (and recorded) before anything is pinned. The
    direction; SAME only when the pin is ahead of what runs and goes back to it."""
    move = await ctx.model.direction(req.component, req.env, target)
    c, env = req.component, req.env
    if move == Direction.SAME and await ctx.model.pinned(c, env) not in (None, target):
        return move  # a pin moved past what runs (promoted, not applied): put it back
    if move == Direction.SAME:
        why = f"{env} already runs {target}; nothing to roll back"
    elif move == Direction.FORWARD:
        why = (
            f"{target} is not older than what {env} runs, so this is not a rollback: a move"
            f" forward goes through requires and review: !deploy {c} {target} to {env}"
        )
    else:
        return move
    refused = await ctx.deployer.report.refuse(req, f"{why}; nothing changed")
    raise UserError(refused.line)


@command(
    "rollback",
    role=Role.deployer,
    usage="<component> <env> [to <ref>] [--emergency] [--force] [--queue] [T123]",
    summary="re-pin <env> to the previous version (or <ref>) and apply it; refuses if its "
    "image or chart is gone; --emergency (admin): helm rollback now to the newest older "
    "revision in the cluster's Helm history (or the one running <ref>), then re-pin",
    examples=[("!rollback builds-api toolsbeta", r"deploy #\d+|no previous version| in toolsbeta")],
    flags=["emergency", "force", "queue"],
)
async def rollback(ctx: Context, inv: Invocation) -> str | None:
    args = inv.args
    if len(args) not in (2, 4) or (len(args) == 4 and args[2] != "to"):
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component, env = ctx.component(args[0]), ctx.env(args[1])
    emergency = "emergency" in inv.flags
    action = Action.EMERGENCY if emergency else Action.ROLLBACK
    req = DeployRequest(component, env, ctx.actor, action, tuple(inv.tasks), "force" in inv.flags)
    await authorize(ctx, req, Role.admin if emergency else Role.deployer)
    if not emergency and (queued := await maybe_queue(ctx, inv, component, env)) is not None:
        return queued
    deployer = ctx.deployer
    if emergency:  # the cluster's Helm history alone: no store, forge or registry needed
        req.ref = args[3] if len(args) == 4 else None
        return reply(ctx, component, await deployer.apply(req))
    bumper = ctx.bumper
    ref = args[3] if len(args) == 4 else "previous"
    try:
        target = (await ctx.model.resolve(component, ref, [env])).raw
    except RefError as exc:
        hint = f"; name one: {ctx.prefix}rollback {component} {env} to <ref>"
        raise UserError(
            f"{exc}{hint if ref.lower() == 'previous' else ''}; nothing changed"
        ) from None
    req.version = target
    if await _back_only(ctx, req, target) == Direction.SAME:  # the pin only: nothing to apply
        await authorize_pin(ctx, component, [env])  # and no one else's lock
        outcome = await bumper.bump(component, target, [env], actor=ctx.actor,
                                    tasks=inv.tasks, action="rollback")  # fmt: skip
        return await bump_reply(ctx, outcome, inv.tasks)
    refusal = await deployer.precheck(req, target)
    if refusal is not None:
        raise UserError(refusal.line)
    outcome = await bumper.bump(component, target, [env], actor=ctx.actor, tasks=inv.tasks,
                                action="rollback")  # fmt: skip
    published = outcome.published
    env_cfg = ctx.config.env(env)
    if (
        published is not None
        and published.mr is not None
        and not (env_cfg and env_cfg.deploy_before_merge)
    ):
        return (
            f"rollback of {component} in {env} to {target} proposed in MR !{published.mr.iid}: "
            f"{published.mr.url}; merge it, then !apply {component} {env}"
        )
    return reply(ctx, component, await deployer.apply(req))
