"""Bumping a component's pins in the control repo: the `!deploy`/`!promote`/`!diff` service.

A bump resolves a chat ref to a version, plans the edits (every configured pin of the
component in the chosen environments, read at the target branch, rewritten with
`bot.control.pins` so each pin is a one-line diff), and publishes them through the control forge as
one commit with the Toolforge message format. Bumps of one component are serialized; on the
plain git forge a lost push race re-plans on a fresh checkout. Every commit or MR the bot
makes gets one SAL entry per environment it changes; its intent (`bot.control.intents`) is
written before the forge is called, so a crash in between cannot lose them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.config.model import Config
from bot.control.changes import MR_LIST
from bot.control.forge import (
    BeforePush,
    BumpError,
    ControlForge,
    FileEdit,
    Published,
    PushRace,
    control_forge_from_config,
)
from bot.control.gitlabport import GitLabPort
from bot.control.intents import Intent, Intents
from bot.control.pins import PinError, pin_diff, pin_file_candidates, read_pin, replace_pin
from bot.control.releases import ComponentSource, ConfiguredSource, SourceError
from bot.control.repo import ControlRepo
from bot.core.versions import Version, check_ref, parse_version, resolve_ref
from bot.store.db import Store
from bot.store.sal import Sal, SalEntry, deploy_message

PUSH_ATTEMPTS = 4
_DEV_MR_RE = re.compile(r"0\.0\.[0-9]+-dev-mr-([0-9]+)")

Reader = Callable[[str], Awaitable[str | None]]
# the version CI built for a merge request (`mr<IID>` refs); the pipeline capability owns that
MrBuilds = Callable[[str, int], Awaitable[str | None]]


@dataclass(frozen=True)
class PinChange:
    env: str
    path: str
    key: str
    old: str
    new: str


@dataclass(frozen=True)
class BumpPlan:
    component: str
    version: str
    envs: tuple[str, ...]
    changes: tuple[PinChange, ...]  # pins that move to `version`
    already: tuple[PinChange, ...]  # pins already at `version`
    files: tuple[FileEdit, ...]
    shared: tuple[str, ...] = ()  # pin files without {env}: every environment reads them

    @property
    def changed_envs(self) -> list[str]:
        return list(dict.fromkeys(c.env for c in self.changes))

    def diff(self) -> str:
        return "".join(pin_diff(f.path, f.old_text, f.new_text) for f in self.files)

    def summary(self) -> str:
        """`builds-api A -> B in toolsbeta; C -> B in tools` (envs grouped by old version)."""
        by_old: dict[str, list[str]] = {}
        for c in self.changes:
            envs = by_old.setdefault(c.old, [])
            if c.env not in envs:
                envs.append(c.env)
        parts = [f"{old} -> {self.version} in {', '.join(envs)}" for old, envs in by_old.items()]
        return f"{self.component} " + "; ".join(parts) + self.shared_note

    @property
    def shared_note(self) -> str:
        """` (components/x/helmfile.yaml is shared by every environment)` or ""."""
        changed = {c.path for c in self.changes}
        shared = sorted(p for p in changed if p.removesuffix(".gotmpl") in self.shared)
        return f" ({', '.join(shared)} is shared by every environment)" if shared else ""


@dataclass(frozen=True)
class PinRead:
    env: str
    path: str
    key: str
    value: str


async def read_pins(
    config: Config,
    component: str,
    envs: Sequence[str],
    read: Reader,
    texts: dict[str, str] | None = None,
) -> list[PinRead]:
    """Every configured pin of component in envs; BumpError when a file or key is missing.
    `texts` collects the files read (path -> text)."""
    texts = {} if texts is None else texts
    out = []
    for env in envs:
        for pin in config.components[component].pins:
            path = await _pin_file(pin.file, component, env, read, texts)
            try:
                out.append(PinRead(env, path, pin.key, read_pin(texts[path], pin.key)))
            except PinError as exc:
                raise BumpError(f"{path}: {exc}; nothing changed") from None
    return out


async def plan_bump(
    config: Config, component: str, envs: Sequence[str], version: str, read: Reader
) -> BumpPlan:
    """Read each pin of component in envs and compute the edits; BumpError when one is bad.
    A pin file without `{env}` in its path is every environment's: changing it changes them
    all, so the plan covers every environment then."""
    shared = tuple(
        p.file.replace("{component}", component)
        for p in config.components[component].pins
        if "{env}" not in p.file
    )
    if shared:
        envs = list(dict.fromkeys([*config.env_names, *envs]))
    originals: dict[str, str] = {}
    pins = await read_pins(config, component, envs, read, originals)
    texts = dict(originals)
    changes: list[PinChange] = []
    already: list[PinChange] = []
    for p in pins:
        change = PinChange(p.env, p.path, p.key, p.value, version)
        if p.value == version:
            already.append(change)
            continue
        try:
            texts[p.path] = replace_pin(texts[p.path], p.key, version)
        except PinError as exc:
            raise BumpError(f"{p.path}: {exc}; nothing changed") from None
        changes.append(change)
    files = tuple(
        FileEdit(path, originals[path], text)
        for path, text in texts.items()
        if text != originals[path]
    )
    return BumpPlan(component, version, tuple(envs), tuple(changes), tuple(already), files, shared)


async def _pin_file(
    template: str, component: str, env: str, read: Reader, cache: dict[str, str]
) -> str:
    try:
        candidates = pin_file_candidates(template, component, env)
    except PinError as exc:
        raise BumpError(f"{exc}; nothing changed") from None
    for path in candidates:
        if path in cache:
            return path
        text = await read(path)
        if text is not None:
            cache[path] = text
            return path
    raise BumpError(f"pin file {candidates[0]} not found in the control repo; nothing changed")


def commit_message(component: str, plan: BumpPlan, releases_url: str, tasks: Sequence[str]) -> str:
    """The Toolforge bump message: title, From/To, the releases link, one Bug: per task."""
    olds = list(dict.fromkeys(c.old for c in plan.changes))
    if len(olds) == 1:
        from_line = f"From {olds[0]}"
    else:
        per_env = {c.env: c.old for c in plan.changes}
        from_line = "From " + ", ".join(f"{old} ({env})" for env, old in per_env.items())
    lines = [
        f"{component}: bump to {plan.version}",
        "",
        from_line,
        f"To {plan.version}",
        f"See {releases_url}/-/releases",
    ]
    if tasks:
        lines += [""] + [f"Bug: {t}" for t in dict.fromkeys(tasks)]
    return "\n".join(lines)


@dataclass(frozen=True)
class BumpOutcome:
    plan: BumpPlan
    published: Published | None  # None: nothing to change


class Bumper:
    """The bump service: resolve, plan, publish, record."""

    def __init__(
        self,
        config: Config,
        store: Store,
        sal: Sal,
        forge: ControlForge,
        source: ComponentSource,
        mr_builds: MrBuilds | None = None,
    ) -> None:
        self.config = config
        self.mr_builds = mr_builds
        self.store = store
        self.sal = sal
        self.forge = forge
        self.source = source
        self._locks: dict[str, asyncio.Lock] = {}
        self.intents = Intents(config.bot.state_dir / "intents")

    def releases_url(self, component: str) -> str:
        comp = self.config.components[component]
        if comp.project and self.config.gitlab is not None:
            return f"{self.config.gitlab.url.rstrip('/')}/{comp.project}"
        return (comp.repo_url or component).removesuffix(".git")

    # reading

    async def pinned(self, component: str, env: str, ref: str | None = None) -> list[str]:
        """The values of every pin of component in env (at the target branch or `ref`)."""

        async def read(path: str) -> str | None:
            return await self.forge.read(path, ref)

        await self.forge.refresh(max_age=5.0)
        return [p.value for p in await read_pins(self.config, component, [env], read)]

    async def previous(self, component: str, env: str) -> str | None:
        """The version pinned in env before the current one (see `pin_history`)."""
        earlier = await self.pin_history(component, env, first_only=True)
        return earlier[0] if earlier else None

    async def pin_history(self, component: str, env: str, *, first_only: bool = False) -> list[str]:
        """The versions pinned in env before the current one, newest first, each once: the
        store's bump history first, then the control repo's history of the pin file."""
        current = await self.pinned(component, env)
        if not current:
            return []
        earlier: list[str] = []

        def add(value: str | None) -> bool:
            if value and value != current[0] and value not in earlier:
                earlier.append(value)
            return first_only and bool(earlier)

        for entry in await self.sal.query(component=component, env=env, limit=200):
            if entry.to_version == current[0] and add(entry.from_version):
                return earlier
        comp = self.config.components[component]
        pin = comp.pins[0]
        for path in pin_file_candidates(pin.file, component, env):
            texts = await self.forge.history(path)
            for text in texts:
                try:
                    value = read_pin(text, pin.key)
                except PinError:
                    continue
                if parse_version(value) is not None and add(value):
                    return earlier
            if texts:
                break
        return earlier

    async def _mr_versions(self, component: str, iid: int) -> dict[int, str]:
        version = await self.mr_builds(component, iid) if self.mr_builds else None
        return {iid: version} if version else {}

    async def resolve(self, component: str, ref: str, envs: Sequence[str]) -> Version:
        """The version a chat ref names for component (RefError/BumpError otherwise)."""
        check_ref(ref)
        low = ref.lower()
        mr_versions: dict[int, str] = {}
        mr = re.fullmatch(r"mr([0-9]+)", low) or _DEV_MR_RE.fullmatch(ref)
        if mr is not None:
            mr_versions = await self._mr_versions(component, int(mr.group(1)))
            return resolve_ref(ref, [], mr_versions=mr_versions)
        try:
            tags = await self.source.tags(component)
        except SourceError as exc:
            raise BumpError(str(exc)) from None
        return resolve_ref(ref, tags)

    async def plan(self, component: str, version: str, envs: Sequence[str]) -> BumpPlan:
        await self.forge.refresh()
        return await plan_bump(self.config, component, envs, version, self.forge.read)

    # writing

    def lock(self, component: str) -> asyncio.Lock:
        """Held while a bump of component plans, publishes and records (and while a
        leftover intent of it is reconciled)."""
        return self._locks.setdefault(component, asyncio.Lock())

    async def bump(
        self,
        component: str,
        version: str,
        envs: Sequence[str],
        *,
        actor: str,
        tasks: Sequence[str] = (),
        action: str = "bump",
    ) -> BumpOutcome:
        """Pin component to version in envs through the forge; record it in the SAL."""
        async with self.lock(component):
            for _ in range(PUSH_ATTEMPTS):
                plan = await self.plan(component, version, envs)
                if not plan.files:
                    return BumpOutcome(plan, None)
                message = commit_message(component, plan, self.releases_url(component), tasks)
                description = _description(message, actor)
                olds = {c.env: c.old for c in plan.changes}
                keys: list[str] = []  # the intents this attempt wrote
                intend = self._intender(plan, olds, actor, tasks, action, keys)
                if plan.changes and self.forge.kind == "gitlab":  # an MR description
                    brings = await self.source.changes(component, plan.changes[0].old, version)
                    if brings is not None:
                        description += "\n\n" + brings.listing(MR_LIST)
                try:
                    published = await self.forge.publish(
                        component, list(plan.files), message, description, intend
                    )
                except (PushRace, BumpError) as exc:
                    self._forget(keys)
                    if isinstance(exc, PushRace):
                        continue
                    raise
                if published.action != "unchanged":
                    await self.record(plan.component, plan.version, olds, published, actor,
                                      tasks, action)  # fmt: skip
                self._forget(keys)
                return BumpOutcome(plan, published)
        raise BumpError(
            f"nothing changed: {self.forge.branch} kept moving during {PUSH_ATTEMPTS} attempts"
        )

    def _intender(
        self, plan: BumpPlan, olds: Mapping[str, str | None], actor: str, tasks: Sequence[str],
        action: str, keys: list[str],
    ) -> BeforePush:  # fmt: skip
        async def intend(sha: str, mark: dict[str, Any]) -> None:
            """Before the forge is written to: what it gets, so that a crash cannot lose
            its SAL entries."""
            it = Intent(sha, plan.component, plan.version, dict(olds), actor, list(tasks),
                        action, mark, Intent.new_key(sha))  # fmt: skip
            await asyncio.to_thread(self.intents.write, it)
            keys.append(it.id)

        return intend

    def _forget(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.intents.clear(key)

    async def record(
        self,
        component: str,
        version: str,
        olds: Mapping[str, str | None],
        published: Published,
        actor: str,
        tasks: Sequence[str],
        action: str,
        note: str = "",
    ) -> None:
        """One SAL entry per environment of `olds` for a published bump."""
        refs = [f"!{published.mr.iid}"] if published.mr else [published.commit_sha[:8]]
        refs += list(tasks)
        for env, old in olds.items():
            env_cfg = self.config.env(env)
            message = deploy_message(actor, component, old, version, env, refs) + note
            if published.action in ("opened", "updated"):
                message += f" (bump MR {published.action}, not merged yet)"
            elif published.mr is not None:
                message += f" (bump MR {published.action})"
            await self.sal.record(
                SalEntry(
                    actor=actor,
                    action=action,
                    message=message,
                    component=component,
                    env=env,
                    from_version=old,
                    to_version=version,
                    commit_sha=published.commit_sha,
                    mr_url=published.mr.url if published.mr else None,
                    tasks=list(tasks),
                    result=f"mr-{published.action}" if published.mr else "pushed",
                    sal_project=env_cfg.sal_project if env_cfg else None,
                )
            )


def _description(message: str, actor: str) -> str:
    body = message.split("\n", 2)[2] if message.count("\n") >= 2 else ""
    return f"{body}\n\nRequested from chat by {actor} via deploybot.".strip()


def build_bumper(
    config: Config,
    store: Store,
    sal: Sal,
    control: ControlRepo | None,
    gitlab: GitLabPort | None,
    charts: ComponentSource | None = None,
    mr_builds: MrBuilds | None = None,
) -> Bumper | None:
    """The bump service for the configured control repo (None when there is none);
    `charts` reads the versions of upstream charts (`helm_repo`)."""
    forge = control_forge_from_config(config, control, gitlab)
    if forge is None:
        return None
    return Bumper(config, store, sal, forge, ConfiguredSource(config, gitlab, charts), mr_builds)
