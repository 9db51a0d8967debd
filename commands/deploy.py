"""`!deploy`, `!promote` and `!diff`: pin a component's version in the control repo.

`!deploy` opens or updates the bump MR (GitLab forge) or pushes the bump commit (plain git
forge); `!promote` pins an environment to what the environment it requires has; `!diff`
shows what a deploy would change without changing anything. The work is `bot.bump.Bumper`.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.cluster.kube import ClusterError
from bot.config.auth import Role
from bot.control.bumper import Bumper, BumpOutcome, BumpPlan
from bot.core.errors import UserError
from bot.core.pathway import pathway
from bot.core.versions import RefError, Version
from bot.deploy.model import Action, DeployRequest
from bot.deploy.running import live_of, live_version
from commands.parse import Invocation
from commands.queue import maybe_queue
from commands.spec import Context, command


def _target(ctx: Context, words: Sequence[str]) -> list[str]:
    """`[to] <env>` or nothing (every environment)."""
    if not words:
        return list(ctx.config.env_names)
    if len(words) == 2 and words[0] == "to":
        return [ctx.env(words[1])]
    if len(words) == 1 and words[0] != "to":
        return [ctx.env(words[0])]
    raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")


async def _authorize(ctx: Context, component: str, envs: Sequence[str]) -> None:
    """The role in every env, and no lock held by someone else (its owner may go through
    their own lock); a lock refusal is logged like every refusal of a mutating command."""
    for env in envs:
        ctx.require(Role.deployer, component, env)
        lock = await ctx.services.locks.get(component, env)
        if lock is not None and lock.owner != ctx.actor:
            req = DeployRequest(component, env, ctx.actor, Action(ctx.spec.name))
            refused = await ctx.deployer.report.refuse(req, f"{lock.describe()}; nothing changed")
            raise UserError(refused.line)


async def _resolve(bumper: Bumper, component: str, ref: str, envs: Sequence[str]) -> Version:
    try:
        return await bumper.resolve(component, ref, envs)
    except RefError as exc:
        raise UserError(str(exc)) from None


async def _pins(ctx: Context, component: str, env: str) -> list[str]:
    try:
        return await ctx.bumper.pinned(component, env)
    except UserError:  # unreadable pins only make the step count conservative
        return []


def _already(plan: BumpPlan) -> str:
    envs = list(dict.fromkeys(c.env for c in plan.already if c.env not in plan.changed_envs))
    return f" ({', '.join(envs)} already at it)" if envs else ""


async def _reply(ctx: Context, outcome: BumpOutcome, tasks: Sequence[str] = ()) -> str:
    plan, published = outcome.plan, outcome.published
    if published is None:
        return (
            f"{plan.component} is already at {plan.version} in {', '.join(plan.envs)}; "
            "nothing changed"
        )
    envs = ctx.config.env_names
    pinned_now = {c.env for c in plan.already}
    if published.mr is None:  # git forge: the commit is the pin
        pinned_now |= set(plan.changed_envs)
    for env in envs:
        if env not in plan.envs and plan.version in await _pins(ctx, plan.component, env):
            pinned_now.add(env)
    path = pathway(
        envs,
        merged=True,
        built=True,
        bump_open=published.mr is not None,
        pinned={env: env in pinned_now for env in envs},
        live=await live_of(ctx.services, plan.component, plan.version, envs),
        bump_label="bump MR open" if published.mr else "bump committed",
    )
    first = plan.summary() + _already(plan) + (f" ({', '.join(tasks)})" if tasks else "")
    if published.mr is not None:
        if published.action == "unchanged":
            return f"MR !{published.mr.iid} already proposes this: {published.mr.url}\n{first}"
        where = f"MR !{published.mr.iid} {published.action}: {published.mr.url}"
    else:
        where = f"pushed {published.commit_sha[:8]} to {ctx.bumper.forge.branch}"
    return f"{first}\n{where} · {path.describe(f'{ctx.prefix}apply {plan.component}')}"


@command(
    "deploy",
    role=Role.deployer,
    usage="<component> <ref> [to <env>] [--queue] [T123]",
    summary="pin a version in the control repo (bump MR, or a commit on the plain git forge);"
    " --queue with `to <env>` waits for a busy or locked target",
    examples=[
        ("!deploy builds-api latest to toolsbeta", r"in toolsbeta|already at"),
        ("!deploy builds-api nothex1", r"unknown ref"),
    ],
    flags=["queue"],
)
async def deploy(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) < 2:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(inv.args[0])
    envs = _target(ctx, inv.args[2:])
    if len(inv.args) > 2 and (queued := await maybe_queue(ctx, inv, component, envs[0])):
        return queued
    await _authorize(ctx, component, envs)
    bumper = ctx.bumper
    version = await _resolve(bumper, component, inv.args[1], envs)
    outcome = await bumper.bump(component, version.raw, envs, actor=ctx.actor, tasks=inv.tasks)
    return await _auto_apply(ctx, outcome, inv.tasks)


@command(
    "promote",
    role=Role.deployer,
    usage="<component> [to <env>] [--queue] [T123]",
    summary="pin an environment to the version pinned in the environment it requires;"
    " --queue waits for a busy or locked target",
    examples=[("!promote builds-api", r"in tools|already at")],
    flags=["queue"],
)
async def promote(ctx: Context, inv: Invocation) -> str:
    if not inv.args:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(inv.args[0])
    cfg = ctx.config
    if len(inv.args) > 1:
        target = _target(ctx, inv.args[1:])[0]
    else:
        first = next((e for e in cfg.environments if e.requires), None)
        if first is None:
            raise UserError("no environment requires another, so there is nothing to promote")
        target = first.name
    source = (cfg.env(target) or cfg.environments[0]).requires
    if source is None:
        raise UserError(f"{target} requires no other environment; use !deploy")
    if (queued := await maybe_queue(ctx, inv, component, target)) is not None:
        return queued
    await _authorize(ctx, component, [target])
    bumper = ctx.bumper
    values = await _runs_in(ctx, component, source)
    if len(values) != 1:
        raise UserError(f"{component} pins differ in {source} ({', '.join(values)}); use !deploy")
    req = DeployRequest(component, target, ctx.actor, Action.PROMOTE, tuple(inv.tasks))
    if refused := await ctx.deployer.check_artifacts(req, values[0]):
        raise UserError(refused.line)
    outcome = await bumper.bump(
        component, values[0], [target], actor=ctx.actor, tasks=inv.tasks, action="promote"
    )
    return await _auto_apply(ctx, outcome, inv.tasks)


async def _runs_in(ctx: Context, component: str, env: str) -> list[str]:
    """What env runs: the live version when it has a cluster, else its pins on the branch."""
    if env not in ctx.services.clusters:
        return list(dict.fromkeys(await ctx.bumper.pinned(component, env)))
    try:
        live = await live_version(ctx.services, component, env)
    except ClusterError as exc:
        raise UserError(f"cannot read what runs in {env}: {exc}; nothing changed") from None
    if live is None or live.startswith("mixed"):
        raise UserError(f"{component} runs {live or 'an unknown version'} in {env}; use !deploy")
    return [live]


async def _auto_apply(ctx: Context, outcome: BumpOutcome, tasks: Sequence[str]) -> str:
    """The bump's reply, and `auto_apply` environments deploy it right away (one more line
    with the results). Elsewhere the reply is worked out after the auto-apply, so its step
    is what runs now; in the component's own room, which sees every deploy state announced,
    the reply goes out first and only refusals follow (no state twice, in order)."""
    deployer, published = ctx.deployer, outcome.published
    if published is None or published.action == "unchanged":
        return await _reply(ctx, outcome, tasks)
    plan = outcome.plan
    here = ctx.sees_announcements(plan.component)
    if here:
        for line in (await _reply(ctx, outcome, tasks)).splitlines():
            await ctx.reply(line)
    results = await deployer.auto_apply(plan.component, plan.changed_envs, ctx.actor, list(tasks))
    lines = [
        ("auto-apply " if r.state == "refused" else "") + r.line
        for r in results
        if r.state == "refused" or not here
    ]
    said = "" if here else await _reply(ctx, outcome, tasks)
    return "\n".join(x for x in (said, " · ".join(lines)) if x)


@command(
    "diff",
    role=Role.anyone,
    usage="<component> <ref> [env]",
    summary="the pin change a deploy would make (full diff linked)",
    examples=[("!diff builds-api latest", r"toolsbeta: .* -> 0\.0\.134|already at")],
)
async def diff(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) < 2:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(inv.args[0])
    envs = _target(ctx, inv.args[2:])
    bumper = ctx.bumper
    version = await _resolve(bumper, component, inv.args[1], envs)
    plan = await bumper.plan(component, version.raw, envs)
    if not plan.files:
        return f"{component} is already at {version.raw} in {', '.join(envs)}; nothing to change"
    per_env = {c.env: f"{c.env}: {c.old} -> {c.new}" for c in plan.changes}
    n = len(plan.files)
    text = f"{component}: would change {n} file{'s' if n > 1 else ''}: " + " · ".join(
        per_env.values()
    )
    text += plan.shared_note
    first = plan.changes[0]
    brings = await bumper.source.changes(component, first.old, version.raw)
    page = plan.diff() + (f"\n{brings.listing()}\n" if brings else "")
    diffs = ctx.services.diffs
    link = await diffs.save(page) if diffs is not None else None
    if brings is not None:
        where = f"{first.env}: " if len({c.old for c in plan.changes}) > 1 else ""
        text += f"\n{where}{brings.line(link)}"
    if link is not None:
        text += f"\nfull diff: {link}"
    return text
