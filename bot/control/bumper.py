"""Bumping a component's pins in the control repo: the `!deploy`/`!promote`/`!diff` service.

A bump resolves a chat ref to a version, plans the edits (every configured pin of the
component in the chosen environments, read at the target branch, rewritten with
`bot.control.pins` so each pin is a one-line diff), and publishes them through the control forge as
one commit with the Toolforge message format. Bumps of one component are serialized; on the
plain git forge a lost push race re-plans on a fresh checkout. Every commit or MR the bot
makes gets one SAL entry per environment it changes.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.control.changes import MR_LIST
from bot.control.forge import (
    BumpError,
    ControlForge,
    FileEdit,
    Published,
    PushRace,
    control_forge_from_config,
)
from bot.control.intents import Intent, Intents
from bot.control.pins import PinError, pin_diff, pin_file_candidates, read_pin, replace_pin
from bot.control.releases import ComponentSource, ConfiguredSource, SourceError
from bot.control.repo import ControlRepo
from bot.core.config import Config
from bot.core.sal import Sal, SalEntry, deploy_message
from bot.core.store import Store
from bot.core.versions import RefError, Version, check_ref, parse_version, resolve_ref
from bot.gitlab.api import GitLabAPI
from bot.gitlab.pipelines import mr_build_version

PUSH_ATTEMPTS = 4
PUSH_IN_FLIGHT = 150.0  # s a push cut off by a crash may still land (git's 120 s, a margin)
_DEV_MR_RE = re.compile(r"0\.0\.[0-9]+-dev-mr-([0-9]+)")

Reader = Callable[[str], Awaitable[str | None]]


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
    ) -> None:
        self.config = config
        self.store = store
        self.sal = sal
        self.forge = forge
        self.source = source
        self._locks: dict[str, asyncio.Lock] = {}
        self.intents = Intents(config.bot.state_dir / "intents")
        self._writing: set[str] = set()

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
        """The version pinned in env before the current one: the store's bump history
        first, then the control repo's history of the pin file."""
        current = await self.pinned(component, env)
        if not current:
            return None
        for entry in await self.sal.query(component=component, env=env, limit=200):
            if entry.to_version == current[0] and entry.from_version not in (None, current[0]):
                return entry.from_version
        comp = self.config.components[component]
        pin = comp.pins[0]
        for path in pin_file_candidates(pin.file, component, env):
            texts = await self.forge.history(path)
            for text in texts:
                try:
                    value = read_pin(text, pin.key)
                except PinError:
                    continue
                if value != current[0] and parse_version(value) is not None:
                    return value
            if texts:
                break
        return None

    async def _mr_versions(self, component: str, iid: int) -> dict[int, str]:
        version = await mr_build_version(self.store, component, iid)
        return {iid: version} if version else {}

    async def resolve(self, component: str, ref: str, envs: Sequence[str]) -> Version:
        """The version a chat ref names for component (RefError/BumpError otherwise)."""
        check_ref(ref)
        low = ref.lower()
        if low == "previous":
            found = {env: await self.previous(component, env) for env in envs}
            values = set(found.values())
            if len(values) > 1:
                shown = ", ".join(f"{e}: {v or 'unknown'}" for e, v in found.items())
                raise RefError(f"previous differs per environment ({shown}); add to <env>")
            return resolve_ref(ref, [], previous=values.pop() if values else None)
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
        lock = self._locks.setdefault(component, asyncio.Lock())
        async with lock:
            for _ in range(PUSH_ATTEMPTS):
                plan = await self.plan(component, version, envs)
                if not plan.files:
                    return BumpOutcome(plan, None)
                message = commit_message(component, plan, self.releases_url(component), tasks)
                description = _description(message, actor)
                olds = {c.env: c.old for c in plan.changes}
                intent = functools.partial(self._intend, plan.component, plan.version, olds,
                                           actor, list(tasks), action)  # fmt: skip
                if plan.changes and self.forge.kind == "gitlab":  # an MR description
                    brings = await self.source.changes(component, plan.changes[0].old, version)
                    if brings is not None:
                        description += "\n\n" + brings.listing(MR_LIST)
                try:
                    published = await self.forge.publish(
                        component, list(plan.files), message, description, intent
                    )
                except PushRace:
                    self._clear_intents()
                    continue
                except BumpError:
                    self._clear_intents()
                    raise
                if published.action != "unchanged":
                    await self._record(plan.component, plan.version, olds, published, actor,
                                       tasks, action)  # fmt: skip
                self.intents.clear(published.commit_sha)
                return BumpOutcome(plan, published)
        raise BumpError(
            f"nothing changed: {self.forge.branch} kept moving during {PUSH_ATTEMPTS} attempts"
        )

    async def _intend(
        self, component: str, version: str, olds: Mapping[str, str | None], actor: str,
        tasks: list[str], action: str, sha: str,
    ) -> None:  # fmt: skip
        """Before a push: write down what it is, so a crash cannot lose its SAL entries."""
        intent = Intent(sha, component, version, dict(olds), actor, tasks, action)
        await asyncio.to_thread(self.intents.write, intent)
        self._writing.add(sha)

    def _clear_intents(self) -> None:
        for sha in self._writing:
            self.intents.clear(sha)
        self._writing.clear()

    async def reconcile(self) -> list[tuple[str, str]]:
        """After a restart: complete the SAL entries of bumps pushed just before a crash.
        An intent not on the remote is kept while the push a crash cut off may still land
        (`PUSH_IN_FLIGHT` s after it was written), then forgotten with a line. Intents of
        this process's own running bumps are left to them. Returns (component, line) pairs
        to announce."""
        pushed_check = getattr(self.forge, "pushed", None)
        said: list[tuple[str, str]] = []
        for it in await asyncio.to_thread(self.intents.pending):
            if it.sha in self._writing:
                continue
            envs = ", ".join(it.olds)
            if pushed_check is None:
                self.intents.clear(it.sha)
                continue
            if not await pushed_check(it.sha):
                if _age(self.intents, it.sha) < PUSH_IN_FLIGHT:
                    continue
                self.intents.clear(it.sha)
                said.append((it.component, (
                    f"{it.component} {it.version} ({it.sha[:8]}, {envs}) never reached"
                    f" {self.forge.branch} before the bot restarted; nothing changed —"
                    f" !status {it.component} to check, then try again"
                )))  # fmt: skip
                continue
            published = Published("pushed", it.sha)
            await self._record(it.component, it.version, it.olds, published, it.actor,
                               it.tasks, it.action, note=" (recorded after a restart)")  # fmt: skip
            self.intents.clear(it.sha)
            said.append((it.component, (
                f"{it.component} {it.version} was pushed to {self.forge.branch} in"
                f" {it.sha[:8]} ({envs}) just before the bot restarted; its SAL entry is now"
                f" written; nothing was applied by it — !status {it.component} to check"
            )))  # fmt: skip
        return said

    async def _record(
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
        refs = [f"!{published.mr.iid}"] if published.mr else [published.commit_sha[:8]]
        refs += list(tasks)
        for env, old in olds.items():
            env_cfg = self.config.env(env)
            message = deploy_message(actor, component, old, version, env, refs) + note
            if published.mr is not None:
                message += f" (bump MR {published.action}, not merged yet)"
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


def _age(intents: Intents, sha: str) -> float:  # since it was written; 0: unknown, keep it
    path = intents.dir / f"{sha}.json"
    return time.time() - path.stat().st_mtime if path.exists() else 0.0


def _description(message: str, actor: str) -> str:
    body = message.split("\n", 2)[2] if message.count("\n") >= 2 else ""
    return f"{body}\n\nRequested from chat by {actor} via deploybot.".strip()


def build_bumper(
    config: Config,
    store: Store,
    sal: Sal,
    control: ControlRepo | None,
    gitlab: GitLabAPI | None,
    charts: ComponentSource | None = None,
) -> Bumper | None:
    """The bump service for the configured control repo (None when there is none);
    `charts` reads the versions of upstream charts (`helm_repo`)."""
    forge = control_forge_from_config(config, control, gitlab)
    if forge is None:
        return None
    return Bumper(config, store, sal, forge, ConfiguredSource(config, gitlab, charts))
