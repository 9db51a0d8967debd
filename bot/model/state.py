"""The model of one component in one environment: desired, applied, running, unapplied.

- *desired*: the pin on the control repo's main, and the control-repo commit last applied
  there (from the deploys the bot recorded);
- *applied*: the Helm release (revision, chart version, status) where a cluster says;
- *running*: what the workloads run (the live chart version; else, without a cluster, what
  the bot last deployed there);
- *unapplied*: the resources that applying main would change, from an injectable
  `UnappliedSource` (none by default).

`Model.facts` gathers them with the gates that stand in the way (requires, review, lock,
window) into an `EnvFacts`, which `bot.model.planner` turns into the next step. The same
`requires` rule serves the deploy preflight (`Model.requires_met`), so the advice and the
refusal never disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bot.cluster.helmrecords import HelmRelease, ReleaseState
from bot.cluster.kube import ClusterError
from bot.cluster.livestate import target_of
from bot.control.bumper import Bumper
from bot.core.errors import UserError
from bot.core.versions import RefError, Version, resolve_ref
from bot.core.windows import describe_refusal, in_window, parse_windows
from bot.model.ancestry import Direction, History
from bot.model.running import (
    has_live_state,
    last_applied_commit,
    last_deployed,
    running_version,
    versions_run,
)
from bot.services import Services
from bot.store.acks import Ack, Acks
from bot.store.locks import Lock

UnappliedSource = Callable[[str, str], Awaitable[tuple[str, ...] | None]]
FrozenSource = Callable[[str], Awaitable[str | None]]  # env -> the freeze in force, described


async def nothing_unapplied(component: str, env: str) -> tuple[str, ...] | None:
    """The default `UnappliedSource`: nothing known."""
    return None


async def never_frozen(env: str) -> str | None:
    """The default `FrozenSource`: no freeze known."""
    return None


@dataclass(frozen=True)
class Offered:
    """What an environment offers to the ones that require it: the versions it runs (live,
    or without live state: deployed or pinned), and how that was read."""

    versions: frozenset[str]
    how: str

    def shown(self) -> str:
        return ", ".join(sorted(v for v in self.versions if v)) or "unknown"


@dataclass(frozen=True)
class EnvFacts:
    """One component in one environment, as the planner needs it."""

    component: str
    env: str
    pinned: str | None  # on main (None: unknown or no pin)
    running: str | None  # None: unknown
    live_known: bool  # a cluster or live file says what runs
    pin_move: Direction  # from what runs to the pin
    offered: Offered  # what it offers to an environment that requires it
    requires: str | None = None
    requires_ok: bool = True  # the required environment runs the pin
    required_contains_pin: bool | None = None  # ... or something that contains it
    required_pinned: bool = False  # the required environment pins the pin
    review: bool = False
    auto_apply: bool = False
    lock: str | None = None  # the lock, described
    window: str | None = None  # the closed window, described
    freeze: str | None = None  # the deploy freeze in force, described
    unapplied: tuple[str, ...] | None = None
    applied: HelmRelease | None = None  # the newest deployed Helm record
    trouble: ReleaseState | None = None  # the newest Helm record, when failed or pending
    last_commit: str | None = None  # control-repo commit last applied here
    ack: Ack | None = None  # a release acked as not for this environment (`!ack`)


@dataclass(frozen=True)
class Seen:
    """What a caller read already (the status board's cells), so the model does not read it
    again; `running` None with `live_known` means the cluster did not answer."""

    pinned: str | None
    running: str | None
    release: ReleaseState | None = None
    store: StoreSeen | None = None  # the store's facts, when the caller read them in bulk


@dataclass(frozen=True)
class StoreSeen:
    """The store's facts about one component and environment, read with every other's."""

    lock: Lock | None
    ack: Ack | None
    last_commit: str | None


SeenMap = Mapping[str, Seen]


class Model:
    """Reads the facts; one per bot (the history cache is shared)."""

    def __init__(
        self, services: Services, bumper: Bumper | None, *,
        unapplied: UnappliedSource = nothing_unapplied,
        frozen: FrozenSource = never_frozen,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:  # fmt: skip
        self.services = services
        self.bumper = bumper
        self.history = History(bumper.source if bumper is not None else None)
        self.unapplied = unapplied
        self.frozen = frozen
        self.now = now

    async def pinned(self, component: str, env: str, seen: SeenMap | None = None) -> str | None:
        if seen is not None and env in seen:
            return seen[env].pinned
        if self.bumper is None:
            return None
        try:
            pins = await self.bumper.pinned(component, env)
        except UserError:
            return None
        return pins[0] if pins else None

    async def running(self, component: str, env: str, seen: SeenMap | None = None) -> str | None:
        if seen is not None and env in seen:
            return seen[env].running
        try:
            return await running_version(self.services, component, env)
        except ClusterError:
            return None

    async def current(self, component: str, env: str) -> str | None:
        """What env has: what runs, else (nothing known to run) its pin."""
        return await self.running(component, env) or await self.pinned(component, env)

    async def previous(self, component: str, env: str) -> str | None:
        """`previous`: the version live in env before the current one, read from its pins
        (the store's bump and deploy history first, then the pin file's git history): the
        newest earlier pin, skipping one newer than what runs that never ran there (no deploy
        of it there, none started from it: pinned ahead, then put back before any apply).
        When the pin is ahead of what runs, that is what runs (the way back is the pin
        alone). In an environment with no live state what runs is the pin: every pin counts."""
        if self.bumper is None:
            return None
        current = await self.current(component, env)
        live_known = has_live_state(self.services, env)
        pinned = await self.pinned(component, env)
        if live_known and current and pinned and current != pinned:  # the pin is ahead?
            if await self.history.direction(component, current, pinned) == Direction.FORWARD:
                return current  # the way back is the pin alone, to what runs
        ran: set[str] | None = None
        for version in await self.bumper.pin_history(component, env):
            if live_known and version != current:
                move = await self.history.direction(component, current, version)
                if move == Direction.FORWARD:
                    if ran is None:
                        ran = await versions_run(self.services.store, component, env)
                    if version not in ran:
                        continue
            return version
        return None

    async def resolve(self, component: str, ref: str, envs: Sequence[str]) -> Version:
        """The version a chat ref names (RefError/BumpError otherwise); `previous` is
        `previous()` in each of `envs`, so every command means by it what `!rollback` does."""
        if self.bumper is None:
            raise RefError("no control repository configured, so no ref can be resolved")
        if ref.lower() != "previous":
            return await self.bumper.resolve(component, ref, envs)
        found = {env: await self.previous(component, env) for env in envs}
        values = set(found.values())
        if len(values) > 1:
            shown = ", ".join(f"{e}: {v or 'unknown'}" for e, v in found.items())
            raise RefError(f"previous differs per environment ({shown}); add to <env>")
        return resolve_ref(ref, [], previous=values.pop() if values else None)

    async def direction(self, component: str, env: str, target: str) -> Direction:
        """Is moving env to `target` forward or back (from what runs, else its pin)?"""
        return await self.history.direction(component, await self.current(component, env), target)

    async def offered(self, component: str, env: str, seen: SeenMap | None = None) -> Offered:
        """What env runs for `requires`: live with a cluster, else deployed or pinned."""
        services = self.services
        if has_live_state(services, env):
            if seen is not None and env in seen:
                live = seen[env].running
            else:
                try:
                    live = await running_version(services, component, env)
                except ClusterError as exc:
                    raise UserError(f"cannot read what runs in {env}: {exc}") from None
            return Offered(frozenset({live} if live else set()), "live")
        runs = {await last_deployed(services.store, component, env)}
        if seen is not None and env in seen:
            runs.add(seen[env].pinned)
        elif self.bumper is not None:
            runs |= set(await self.bumper.pinned(component, env))
        return Offered(frozenset(v for v in runs if v), "deployed or pinned")

    async def requires_met(self, component: str, env: str, version: str) -> str | None:
        """None when env's `requires` runs `version` (or env requires none); else why not."""
        env_cfg = self.services.config.env(env)
        required = env_cfg.requires if env_cfg else None
        if required is None:
            return None
        offered = await self.offered(component, required)
        if version in offered.versions:
            return None
        return (
            f"{env} requires {required}, which does not run {version}"
            f" ({offered.how}: {offered.shown()})"
        )

    def window(self, env: str) -> str | None:
        env_cfg = self.services.config.env(env)
        windows = parse_windows(env_cfg.windows if env_cfg else [])
        now = self.now()
        return None if in_window(windows, now) else f"{env} is {describe_refusal(windows, now)}"

    async def release(
        self, component: str, env: str, seen: SeenMap | None = None
    ) -> ReleaseState | None:
        """The Helm release's records (None: no cluster, none, or unreadable)."""
        if seen is not None and env in seen:
            return seen[env].release
        cluster = self.services.clusters.get(env)
        if cluster is None:
            return None
        target = target_of(self.services.config, component)
        try:
            return await cluster.release_state(target.namespace, target.release)
        except ClusterError:
            return None

    async def facts(self, component: str, env: str, seen: SeenMap | None = None) -> EnvFacts:
        """Everything the planner needs about component in env."""
        env_cfg = self.services.config.env(env)
        pinned = await self.pinned(component, env, seen)
        running = await self.running(component, env, seen)
        try:
            offered = await self.offered(component, env, seen)
        except UserError:
            offered = Offered(frozenset(), "unknown")
        move = (
            await self.history.direction(component, running, pinned)
            if pinned
            else Direction.UNKNOWN
        )
        known = seen[env].store if seen is not None and env in seen else None
        if known is not None:
            lock, last_commit, ack = known.lock, known.last_commit, known.ack
        else:
            lock = await self.services.locks.get(component, env)
            last_commit = await last_applied_commit(self.services.store, component, env)
            ack = await Acks(self.services.store).get(component, env)
        release = await self.release(component, env, seen)
        facts = EnvFacts(
            component, env, pinned, running, has_live_state(self.services, env), move, offered,
            review=bool(env_cfg and env_cfg.review),
            auto_apply=bool(env_cfg and env_cfg.auto_apply),
            lock=lock.describe() if lock else None,
            window=self.window(env),
            freeze=await self.frozen(env),
            unapplied=await self.unapplied(component, env) if pinned else None,
            applied=release.deployed if release else None,
            trouble=release if release is not None and release.in_trouble else None,
            last_commit=last_commit,
            ack=ack,
        )  # fmt: skip
        required = env_cfg.requires if env_cfg else None
        if required is None or pinned is None:
            return facts
        try:
            theirs = await self.offered(component, required, seen)
        except UserError:
            theirs = Offered(frozenset(), "unknown")
        req_running = await self.running(component, required, seen)
        return _with_requires(
            facts, required, theirs, await self.pinned(component, required, seen),
            await self.history.contains(component, req_running, pinned),
        )  # fmt: skip

    async def all_facts(self, component: str, seen: SeenMap | None = None) -> dict[str, EnvFacts]:
        envs = self.services.config.env_names
        return {env: await self.facts(component, env, seen) for env in envs}

    async def contains(
        self, component: str, version: str, seen: SeenMap | None = None
    ) -> dict[str, bool | None]:
        """Per environment: does what runs there contain `version` (None: unknown)?"""
        out: dict[str, bool | None] = {}
        for env in self.services.config.env_names:
            running = await self.running(component, env, seen)
            out[env] = await self.history.contains(component, running, version)
        return out


def _with_requires(
    facts: EnvFacts, required: str, theirs: Offered, their_pin: str | None,
    contains: bool | None,
) -> EnvFacts:  # fmt: skip
    return replace(
        facts,
        requires=required,
        requires_ok=facts.pinned in theirs.versions,
        required_contains_pin=contains,
        required_pinned=their_pin == facts.pinned,
    )
