"""`!where <component> <ref> [to <env>]`: how far a commit or version is on its path to
production (`to <env>` says whose `previous` is meant).

Gathers the evidence for each step (merged on the default branch, built by a pipeline or
tagged as a release, proposed in the open bump MR, pinned per environment on the control
repo's target branch) and lets `bot.model.pathway` turn it into "step k of n".
"""

from __future__ import annotations

import re

from bot.config.auth import Role
from bot.control.bumper import Bumper
from bot.control.forge import BumpError
from bot.control.releases import SourceError
from bot.core.errors import UserError
from bot.core.versions import RefError, Tag, Version, check_ref
from bot.model.pathway import pathway
from bot.model.views import VersionView, version_view
from bot.pipelines.announce import newest_pipeline
from commands.parse import Invocation
from commands.spec import Context, command

_SHA_RE = re.compile(r"[0-9a-f]{4,40}")


async def _pinned_in(bumper: Bumper, component: str, env: str, ref: str | None = None) -> list[str]:
    try:
        return await bumper.pinned(component, env, ref)
    except BumpError:
        return []


async def _bumped(
    bumper: Bumper, component: str, envs: list[str], branch: str, version: str
) -> bool:
    """Whether the open bump's branch pins `version` in some environment."""
    for env in envs:
        if version in await _pinned_in(bumper, component, env, branch):
            return True
    return False


async def _find(
    ctx: Context, component: str, ref: str, envs: list[str]
) -> tuple[Version | None, str | None, bool, bool, str | None]:
    """What `ref` names: its build (if any), its commit, whether that commit exists and is
    merged, and the merged commit's link."""
    bumper = ctx.bumper
    version: Version | None = None
    sha: str | None = None
    try:
        version = await ctx.model.resolve(component, ref, envs)
    except RefError as exc:
        if _SHA_RE.fullmatch(ref.lower()) is None or "ambiguous" in str(exc):
            raise UserError(str(exc)) from None
        sha = ref.lower()  # a commit without a release build (yet)
    tags: list[Tag] = []
    try:
        tags = await bumper.source.tags(component)
    except SourceError:
        pass
    if version is not None and version.is_release:
        sha = next((t.commit for t in tags if t.name == version.raw), version.sha8)
    if sha is None:
        return version, sha, False, False, None
    try:
        found = await bumper.source.merged(component, sha)
    except SourceError as exc:
        raise UserError(str(exc)) from None
    if found is None:
        return version, sha, False, False, None
    if found.on_branch:
        return version, found.sha, True, True, found.url
    return version, sha, True, False, None


def _arguments(ctx: Context, inv: Invocation) -> tuple[str, str, list[str]]:
    """The component, the ref and the environments whose `previous` is meant (`previous` is
    per environment: `to <env>` names the one, as on !diff and !deploy)."""
    if len(inv.args) not in (2, 4) or inv.args[2:3] not in ([], ["to"]):
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component = ctx.component(inv.args[0])
    try:
        check_ref(inv.args[1])
    except RefError as exc:
        raise UserError(str(exc)) from None
    of = [ctx.env(inv.args[3])] if len(inv.args) == 4 else list(ctx.config.env_names)
    return component, inv.args[1], of


@command(
    "where",
    role=Role.anyone,
    usage="<component> <ref> [to <env>]",
    summary="the path to production of a commit or version: step k of n, with links;"
    " `to <env>` says whose `previous` is meant",
    examples=[("!where builds-api latest", r"step \d of 5")],
)
async def where(ctx: Context, inv: Invocation) -> str:
    component, ref, of = _arguments(ctx, inv)
    bumper = ctx.bumper
    envs = ctx.config.env_names
    version, sha, exists, merged, merged_url = await _find(ctx, component, ref, of)
    seen = await newest_pipeline(bumper.store, component, sha, version.raw if version else None)
    built = bool(version and version.is_release) or bool(seen and seen.status == "success")
    bump = await bumper.forge.open_bump(component)
    in_bump = (
        bump is not None
        and version is not None
        and await _bumped(bumper, component, envs, bump.branch, version.raw)
    )
    pins = {env: await _pinned_in(bumper, component, env) for env in envs}
    links = {
        "merged": merged_url,
        "built": seen.url if seen else None,
        "bump": bump.url if bump else None,
    }
    label = "bump MR open" if bumper.forge.kind == "gitlab" else "bump committed"
    view = None
    if version is not None:
        view = await version_view(
            ctx.model, component, version.raw, merged=merged, built=built, bump_open=in_bump,
            bump_label=label, links=links, prefix=ctx.prefix,
        )  # fmt: skip
        path = view.path
    else:
        pinned = {env: False for env in envs}
        path = pathway(envs, merged=merged, built=built, bump_open=False, pinned=pinned,
                       links=links, bump_label=label)  # fmt: skip
    described = view.describe() if view is not None else path.describe()
    name = version.raw if version else sha or ref
    if version is None and not exists:
        return (
            f"{component} {ref}: no such commit or build in its repository; "
            f"check the sha, or try {ctx.prefix}where {component} latest"
        )
    branch = ctx.config.components[component].default_branch
    if version is not None and not version.is_release:
        head = f"{component} {name} is a dev build (not on the path to production)"
    elif not merged and sha is not None:
        head = f"{component} {name}: not on {branch} (yet) · {described}"
    else:
        head = f"{component} {name}: {described}"
    links_shown = [f"{s.label} {s.link}" for s in path.steps if s.link]
    if bump is not None and not in_bump:
        links_shown.append(f"open bump MR !{bump.iid} is for another version")
    lines = [head, _now(pins, view if version is not None and version.is_release else None)]
    if links_shown:
        lines.append(" · ".join(links_shown))
    return "\n".join(lines)


def _now(pins: dict[str, list[str]], view: VersionView | None) -> str:
    """`pinned now: …`, which environments contain it (by ancestry) and the next step."""
    text = "pinned now: " + " · ".join(f"{e} {','.join(v) or 'unknown'}" for e, v in pins.items())
    if view is None:
        return text
    inside = [e for e in pins if view.contains.get(e)]
    if inside:
        text += f" · runs in (contained in what runs): {', '.join(inside)}"
    if view.advice.command is not None or view.advice.held:
        text += f" · {view.advice.line()}"
    return text
