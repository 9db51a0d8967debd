"""`!deploy`, `!promote` and `!diff`: pin a component's version in the control repo.

`!deploy` opens or updates the bump MR (GitLab forge) or pushes the bump commit (plain git
forge); `!promote` pins an environment to what the environment it requires has; `!diff`
shows what a deploy would change without changing anything. The work is `bot.control.bumper.Bumper`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bot.cluster.kube import ClusterError
from bot.config.auth import Role, same_person
from bot.control.bumper import BumpOutcome, BumpPlan
from bot.core.errors import UserError
from bot.core.versions import RefError, Version
from bot.deploy.model import Action, DeployRequest
from bot.model.ancestry import Direction
from bot.model.pathway import pathway
from bot.model.planner import plan_env
from bot.model.running import has_live_state, live_version
from bot.model.views import version_view
from commands.parse import Invocation
from commands.queue import maybe_queue
from commands.spec import Context, command

LIVE_WAIT = 5.0  # seconds the downgrade check waits for what runs before using the pin


def _target(ctx: Context, words: Sequence[str], *, pin: bool = False) -> list[str]:
    """`[to] <env>`, or nothing: every environment (`!diff`), or for a pin (`!deploy`) the
    start of the promotion path: the `auto_apply` environments and those that require no
    other. An environment that requires another (production) changes only through `to`,
    `!promote` or a merged MR."""
    if not words and pin:
        return [e.name for e in ctx.config.environments if e.auto_apply or not e.requires]
    if not words:
        return list(ctx.config.env_names)
    if len(words) == 2 and words[0] == "to":
        return [ctx.env(words[1])]
    if len(words) == 1 and words[0] != "to":
        return [ctx.env(words[0])]
    raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")


async def authorize_pin(ctx: Context, component: str, envs: Sequence[str]) -> None:
    """The role in every env, and no lock held by someone else (its owner may go through
    their own lock); a lock refusal is logged like every refusal of a mutating command."""
    for env in envs:
        ctx.require(Role.deployer, component, env)
        lock = await ctx.services.locks.get(component, env)
        if lock is not None and not same_person(ctx.config.people, lock.owner, ctx.actor):
            req = DeployRequest(component, env, ctx.actor, Action(ctx.spec.name))
            refused = await ctx.deployer.report.refuse(req, f"{lock.describe()}; nothing changed")
            raise UserError(refused.line)


async def _resolve(ctx: Context, component: str, ref: str, envs: Sequence[str]) -> Version:
    try:
        return await ctx.model.resolve(component, ref, envs)
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


async def bump_reply(
    ctx: Context, outcome: BumpOutcome, tasks: Sequence[str] = (), applying: Sequence[str] = ()
) -> str:
    """The bump's reply; with `applying` (auto_apply environments about to deploy it) it
    says so instead of describing the pin as not applied yet."""
    plan, published = outcome.plan, outcome.published
    if published is None:
        return await _already_at(ctx, plan.component, plan.version, plan.envs, "nothing changed")
    first = plan.summary() + _already(plan) + (f" ({', '.join(tasks)})" if tasks else "")
    if published.mr is not None:
        if published.action == "unchanged":
            return f"MR !{published.mr.iid} already proposes this: {published.mr.url}\n{first}"
        where = f"MR !{published.mr.iid} {published.action}: {published.mr.url}"
        if applying:
            return f"{first}\n{where} · {_applying_now(applying)}"
        return f"{first}\n{where} · {await _mr_path(ctx, outcome)}"
    where = f"pushed {published.commit_sha[:8]} to {ctx.bumper.forge.branch}"
    if applying:
        return f"{first}\n{where} · {_applying_now(applying)}"
    view = await version_view(
        ctx.model, plan.component, plan.version, bump_open=False, bump_label="bump committed",
        prefix=ctx.prefix,
    )  # fmt: skip
    return f"{first}\n{where} · {view.describe()}"


async def _already_at(
    ctx: Context, component: str, version: str, envs: Sequence[str], outcome: str
) -> str:
    """The pins are at `version` already; where one is not what runs, the planner's step."""
    text = f"{component} is already at {version} in {', '.join(envs)}; {outcome}"
    facts = await ctx.model.all_facts(component)
    steps = [plan_env(facts[e], facts, ctx.prefix) for e in envs if e in facts]
    todo = next((a for a in steps if a.command is not None), None)
    return text if todo is None else f"{text} · {todo.line()}"  # None: every one runs it


def _applying_now(envs: Sequence[str]) -> str:
    return f"applying now in {', '.join(envs)} (auto_apply); its deploy lines follow"


async def _mr_path(ctx: Context, outcome: BumpOutcome) -> str:
    """The step while the bump is an MR: pinned counts where the MR or main pins it."""
    plan = outcome.plan
    envs = ctx.config.env_names
    pinned_now = {c.env for c in plan.already}
    for env in envs:
        if env not in plan.envs and plan.version in await _pins(ctx, plan.component, env):
            pinned_now.add(env)
    contains = await ctx.model.contains(plan.component, plan.version)
    facts = await ctx.model.all_facts(plan.component)
    path = pathway(
        envs, merged=True, built=True, bump_open=True,
        pinned={env: env in pinned_now for env in envs},
        live={e: contains[e] if facts[e].live_known else None for e in envs},
        bump_label="bump MR open",
    )  # fmt: skip
    return path.describe(f"{ctx.prefix}apply {plan.component}")


@command(
    "deploy",
    role=Role.deployer,
    usage="<component> <ref> [to <env>] [--force] [--queue] [T123]",
    summary="pin a version in the control repo (bump MR, or a commit on the plain git forge);"
    " without `to`, only the environments that apply it now (auto_apply); pinning an older"
    " release than what runs is a downgrade and needs --force (or !rollback); --queue with"
    " `to <env>` waits for a busy or locked target",
    flags=["force", "queue"],
    examples=[
        ("!deploy builds-api latest to toolsbeta", r"in toolsbeta|already at"),
        ("!deploy builds-api nothex1", r"unknown ref"),
    ],
)
async def deploy(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) < 2:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(inv.args[0])
    envs = _target(ctx, inv.args[2:], pin=True)
    if len(inv.args) > 2 and (queued := await maybe_queue(ctx, inv, component, envs[0])):
        return queued
    await authorize_pin(ctx, component, envs)
    if "force" in inv.flags:
        ctx.require(Role.admin, component, envs[0])
    bumper = ctx.bumper
    version = await _resolve(ctx, component, inv.args[1], envs)
    if "force" not in inv.flags:
        await _no_downgrade(ctx, component, version.raw, envs)
    held: list[str] = []
    if len(inv.args) == 2:  # no `to`: only where it can be applied now
        envs, held = await _applicable_now(ctx, component, version.raw, envs)
    outcome = await bumper.bump(component, version.raw, envs, actor=ctx.actor, tasks=inv.tasks)
    return "\n".join([await _auto_apply(ctx, outcome, inv.tasks), *held])


async def _applicable_now(
    ctx: Context, component: str, version: str, envs: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Without `to`, an environment that requires another is pinned only if its auto-apply
    can pass `requires`: the required environment runs `version`, or this command pins and
    applies it there first. Else its pin would change and not be applied (a drift the bot
    made itself). The environments kept, and a line for each left out."""
    model, applied_first = ctx.model, set()
    keep, held = [], []
    for env in envs:
        cfg = ctx.config.env(env)
        required = cfg.requires if cfg else None
        if required is not None and required not in applied_first:
            if (why := await model.requires_met(component, env, version)) is not None:
                held.append(f"{env} not pinned: {why.replace(f'{env} requires', 'it requires')}")
                continue
        keep.append(env)
        applies = ctx.deployer.auto_apply_envs([env])
        if applies and version not in await _pins(ctx, component, env):
            applied_first.add(env)
    if not keep:
        raise UserError("; ".join(held) + "; nothing changed")
    return keep, held


async def _no_downgrade(
    ctx: Context, component: str, version: str, envs: Sequence[str], *, forceable: bool = True
) -> None:
    """Pinning an ancestor of what runs is a step back: say so; `--force` (admin) pins it
    anyway where the command takes it (`forceable`), `!rollback` is the command for going
    back."""
    model = ctx.model
    for env in envs:
        try:  # a hung cluster API must not hold the pin: judge from the pin then
            async with asyncio.timeout(LIVE_WAIT):
                runs = await model.running(component, env)
        except TimeoutError:
            runs = await model.pinned(component, env)
        if await model.history.direction(component, runs, version) != Direction.BACK:
            continue
        raise UserError(
            f"{version} is older than the {runs} that {env} runs: a downgrade; to go back:"
            f" {ctx.prefix}rollback {component} {env} to {version}"
            + (" (or add --force to pin it anyway)" if forceable else "")
            + "; nothing changed"
        )


@command(
    "promote",
    role=Role.deployer,
    usage="<component> [to <env>] [--queue] [T123]",
    summary="pin an environment to the version the environment it requires runs;"
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
    await authorize_pin(ctx, component, [target])
    bumper = ctx.bumper
    values = await _runs_in(ctx, component, source)
    if len(values) != 1:
        raise UserError(f"{component} pins differ in {source} ({', '.join(values)}); use !deploy")
    req = DeployRequest(component, target, ctx.actor, Action.PROMOTE, tuple(inv.tasks))
    # what the required environment runs may be older than what runs here (rolled back
    # there): pinning it would be a step back, which is !rollback's to do
    await _no_downgrade(ctx, component, values[0], [target], forceable=False)
    if refused := await ctx.deployer.check_artifacts(req, values[0]):
        raise UserError(refused.line)
    outcome = await bumper.bump(
        component, values[0], [target], actor=ctx.actor, tasks=inv.tasks, action="promote"
    )
    return await _auto_apply(ctx, outcome, inv.tasks)


async def _runs_in(ctx: Context, component: str, env: str) -> list[str]:
    """What env runs: the live version when a cluster (or live file) says, as the `requires`
    gate reads it; else its pins on the branch."""
    if not has_live_state(ctx.services, env):
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
    the reply goes out first, names the apply that follows, and only refusals follow (no
    state twice, in order)."""
    deployer, published = ctx.deployer, outcome.published
    if published is None or published.action == "unchanged":
        return await bump_reply(ctx, outcome, tasks)
    plan = outcome.plan
    here = ctx.sees_announcements(plan.component)
    if here:  # said before the deploy's lines, so it names the apply, not the state before it
        applying = deployer.auto_apply_envs(plan.changed_envs)
        for line in (await bump_reply(ctx, outcome, tasks, applying)).splitlines():
            await ctx.reply(line)
    results = await deployer.auto_apply(plan.component, plan.changed_envs, ctx.actor, list(tasks))
    lines = [
        ("auto-apply " if r.state == "refused" else "") + r.line
        for r in results
        if r.state == "refused" or not here
    ]
    said = "" if here else await bump_reply(ctx, outcome, tasks)
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
    version = await _resolve(ctx, component, inv.args[1], envs)
    plan = await bumper.plan(component, version.raw, envs)
    if not plan.files:  # the pin is there; what runs may not be
        return await _already_at(ctx, component, version.raw, envs, "nothing to change")
    per_env = {c.env: f"{c.env}: {c.old} -> {c.new}" for c in plan.changes}
    n = len(plan.files)
    text = f"{component}: would change {n} file{'s' if n > 1 else ''}: " + " · ".join(
        per_env.values()
    )
    text += plan.shared_note
    first = plan.changes[0]
    back = first.old != version.raw and bool(
        await ctx.model.history.is_ancestor(component, version.raw, first.old)
    )
    if back:  # going back: the commits of new..old are taken away
        brings = await bumper.source.changes(component, version.raw, first.old)
    else:
        brings = await bumper.source.changes(component, first.old, version.raw)
    page = plan.diff() + (f"\n{brings.listing()}\n" if brings else "")
    diffs = ctx.services.diffs
    link = await diffs.save(page) if diffs is not None else None
    if brings is not None:
        where = f"{first.env}: " if len({c.old for c in plan.changes}) > 1 else ""
        text += f"\n{where}{brings.back_line(link) if back else brings.line(link)}"
    if link is not None:
        text += f"\nfull diff: {link}"
    return text
