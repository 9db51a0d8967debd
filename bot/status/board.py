"""What is running where: the per component+environment picture `!status`, `GET /status` and
the monitors share.

`StatusBoard` reads every source (pins on main and on the open bump MR, release tags, the
cluster's Deployments and pods, locks, alerts) concurrently, each call bounded by
`monitors.source_timeout` (and all of one answer within it: a source that can only start once
another answered gets what is left) and reused for `monitors.status_cache` seconds. A source that fails
or hangs becomes `Got(error=...)` and shows as "unknown (reason)"; it never fails the answer.
`bot.status.lines` puts the result into words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bot.cluster.helmrecords import ReleaseState
from bot.cluster.kube import (
    ClusterError,
    DeploymentState,
    PodProblem,
    PodState,
    live_from_deployments,
    problems_of,
)
from bot.cluster.livestate import Cluster, LiveSeen, live_sources, target_of
from bot.cluster.registry import RegistryError
from bot.control.bumper import Bumper
from bot.control.forge import OpenBump
from bot.control.releases import SourceError
from bot.control.snapshot import PinSnapshot
from bot.core.errors import UserError
from bot.core.git import GitError
from bot.core.tasks import within
from bot.core.text import one_line
from bot.core.versions import RefError, Tag, Version, release_versions
from bot.deploy.records import active_deploys
from bot.model.pathway import Pathway, pathway
from bot.model.planner import Advice
from bot.model.running import last_applied_commits, last_deployed
from bot.model.state import Model, Seen, StoreSeen
from bot.model.views import env_advice
from bot.services import Services
from bot.store.acks import Ack, Acks
from bot.store.alerts import Alert, AlertStore
from bot.store.locks import ALL_ENVS, Lock

log = logging.getLogger("deploybot.status")

T = TypeVar("T")
# per gather (each task of it sees its own): when its answer is due; the pin snapshot read
_due: ContextVar[float | None] = ContextVar("status_due", default=None)
_refreshing: ContextVar[asyncio.Task[Any] | None] = ContextVar("status_snapshot", default=None)
NO_CLUSTER = "no cluster configured"
# errors whose message is written for people (one line, no secrets)
_TOLD = (UserError, SourceError, ClusterError, RegistryError, GitError, RefError)


@dataclass(frozen=True)
class Got(Generic[T]):
    """A source's answer: `value`, or `error` saying why it is unknown."""

    value: T | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unknown(self) -> str:
        return f"unknown ({self.error})"


@dataclass(frozen=True)
class Health:
    ready: int
    desired: int
    problems: tuple[PodProblem, ...]
    pods: tuple[PodState, ...] | None  # None: not listed (every Deployment was ready)

    @property
    def ok(self) -> bool:
        return self.ready >= self.desired and not self.problems


@dataclass
class Cell:
    """One component in one environment."""

    component: str
    env: str
    pinned: Got[list[str]]
    live: Got[str | None]
    health: Got[Health]
    lock: Lock | None = None
    deploying: tuple[int, str, str] | None = None  # (deploy id, version, state) in flight
    bump_pinned: Got[list[str]] | None = None  # None: no bump MR open
    live_since: float | None = None
    alerts: list[Alert] = field(default_factory=list)
    release: Got[ReleaseState | None] = field(default_factory=Got)  # Helm's newest record
    advice: Advice | None = None  # the planner's next step here (None: not known)
    ack: Ack | None = None  # a release acked as not for this environment (`!ack`)
    applied_commit: str | None = None  # the control-repo commit last applied here
    annotated: bool = False  # lock, alerts, ack and applied_commit were read from the store

    @property
    def release_trouble(self) -> ReleaseState | None:
        """The Helm release, when its newest record is failed or pending."""
        state = self.release.value
        return state if state is not None and state.in_trouble else None

    @property
    def drifted(self) -> bool:
        pins, live = self.pinned.value, self.live.value
        return bool(self.pinned.ok and self.live.ok and live and pins and live not in pins)

    @property
    def needs_attention(self) -> bool:
        unknown = [
            g for g in (self.pinned, self.live, self.health) if g.error not in (None, NO_CLUSTER)
        ]
        health = self.health.value
        return bool(
            self.alerts
            or self.release_trouble
            or unknown
            or self.drifted
            or self.lock
            or self.deploying
            or (health and not health.ok)
        )


@dataclass
class ComponentStatus:
    component: str
    tags: Got[list[Tag]]
    bump: Got[OpenBump | None]
    cells: dict[str, Cell]
    contains_latest: dict[str, bool | None] = field(default_factory=dict)  # by ancestry

    @property
    def latest(self) -> Version | None:
        releases = release_versions(self.tags.value or [])
        stable = [v for v in releases if not v.is_prerelease] or releases  # upstream charts
        return stable[-1] if stable else None

    def path(self, envs: Sequence[str]) -> Pathway | None:
        """The newest release's path to production."""
        latest = self.latest
        if latest is None:
            return None
        cells = [self.cells[e] for e in envs]
        return pathway(
            envs,
            merged=True,
            built=True,
            bump_open=any(
                latest.raw in (c.bump_pinned.value or []) for c in cells if c.bump_pinned
            ),
            pinned={c.env: latest.raw in (c.pinned.value or []) for c in cells},
            live={c.env: self._contains(c, latest.raw) for c in cells},
        )

    def _contains(self, cell: Cell, version: str) -> bool | None:
        """Does what runs in cell contain `version` (the model's answer, by ancestry)?"""
        if not cell.live.ok:
            return None
        if cell.env in self.contains_latest:
            return self.contains_latest[cell.env]
        return cell.live.value == version


class StatusBoard:
    """Gathers `ComponentStatus`es; owns the short-lived cache of source answers."""

    def __init__(
        self,
        services: Services,
        bumper: Bumper | None,
        *,
        clock: Callable[[], float] = time.time,
        git_parallel: int = 8,
        model: Model | None = None,
    ) -> None:
        self.services = services
        self.bumper = bumper
        self.model = model or Model(services, bumper)
        self.clock = clock
        self._cache: dict[tuple[str, ...], tuple[float, Got[Any]]] = {}
        self._git = asyncio.Semaphore(git_parallel)
        cr = services.config.control_repo
        plain_git = services.control is not None and cr is not None and cr.forge == "git"
        self._snapshot = (
            PinSnapshot(services.config, services.control)
            if plain_git and services.control
            else None
        )
        self._snapshot_error: str | None = None

    @property
    def timeout(self) -> float:
        return self.services.config.monitors.source_timeout

    def forget(self, component: str) -> None:
        """Drop cached answers about `component` (after a deploy changed what runs)."""
        for key in [k for k in self._cache if component in k]:
            del self._cache[key]

    async def _get(
        self, key: tuple[str, ...], fetch: Callable[[], Awaitable[T]], fresh: bool
    ) -> Got[T]:
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now and not fresh:
            return hit[1]
        limit = self.timeout
        due = _due.get()
        if due is not None:  # this source started late: it gets what is left of the answer's
            limit = max(0.0, min(limit, due - asyncio.get_running_loop().time()))
        try:
            value = await within(fetch(), limit)
        except TimeoutError:
            return Got(error=f"no answer within {self.timeout:g}s")
        except _TOLD as exc:
            return Got(error=one_line(str(exc)) or type(exc).__name__)
        except Exception as exc:  # a bug or an unexpected failure: logged, shown by type only
            log.warning("status source %s failed", "/".join(key), exc_info=True)
            return Got(error=type(exc).__name__)
        got: Got[T] = Got(value)
        self._cache[key] = (now + self.services.config.monitors.status_cache, got)
        return got

    async def _pinned(self, component: str, env: str, ref: str | None) -> list[str]:
        if ref is None and self._snapshot is not None:
            if self._snapshot_error is not None:
                raise UserError(self._snapshot_error)
            return await self._snapshot.pinned(component, env)
        async with self._git:
            if self.bumper is not None:
                return await self.bumper.pinned(component, env, ref)
            control = self.services.control
            if control is None:
                raise UserError("no control repo configured")
            await control.sync(max_age=10)
            comp = self.services.config.components[component]
            pins = await control.pins(component, comp, env, ref)
            bad = next((p for p in pins if p.value is None), None)
            if bad is not None:
                raise UserError(f"{bad.path}: {bad.error}")
            return [p.value for p in pins if p.value is not None]

    async def _tags(self, component: str) -> list[Tag]:
        if self.bumper is None:
            raise UserError("no control repo configured, so no release source")
        async with self._git:
            return await self.bumper.source.tags(component)

    async def _open_bump(self, component: str) -> OpenBump | None:
        return None if self.bumper is None else await self.bumper.forge.open_bump(component)

    async def _cell(
        self,
        component: str,
        env: str,
        cluster: Cluster | None,
        bump_task: asyncio.Future[Got[OpenBump | None]],
        fresh: bool,
        all_pods: bool,
    ) -> Cell:
        target = target_of(self.services.config, component)
        pinned_task = asyncio.ensure_future(self._pinned_got(component, env, fresh))
        if cluster is None:
            pinned = await pinned_task
            none: Got[Any] = Got(error=NO_CLUSTER)
            cell = Cell(component, env, pinned, none, none)
            await self._bump_pinned(cell, bump_task, fresh)
            return cell
        deps_task = self._get(
            ("deployments", env, target.namespace),
            lambda: cluster.deployments(target.namespace),
            fresh,
        )
        release_task = self._get(
            ("release", env, target.namespace, target.release),
            lambda: cluster.release_state(target.namespace, target.release),
            fresh,
        )
        pinned, deps, release = await asyncio.gather(pinned_task, deps_task, release_task)
        live = await self._live(cluster, env, target.namespace, target.release,
                                target.chart_name, deps, fresh)  # fmt: skip
        health = await self._health(cluster, env, target.namespace, deps, fresh, all_pods)
        cell = Cell(component, env, pinned, live, health, release=release)
        await self._bump_pinned(cell, bump_task, fresh)
        return cell

    async def _pinned_got(self, component: str, env: str, fresh: bool) -> Got[list[str]]:
        """The pins on main; on plain git after the snapshot read that began with the answer."""
        refreshing = _refreshing.get()
        if refreshing is not None:
            await refreshing
        rev = self._snapshot.rev if self._snapshot is not None else ""  # new commit: re-read
        return await self._get(
            ("pinned", component, env, rev), lambda: self._pinned(component, env, None), fresh
        )

    async def _bump_pinned(
        self, cell: Cell, bump_task: asyncio.Future[Got[OpenBump | None]], fresh: bool
    ) -> None:
        """The pins on the open bump MR's branch, once the MR is known (within the answer's
        time: started late, it gets what is left)."""
        bump = await bump_task
        if bump.value is not None:
            branch = bump.value.branch
            cell.bump_pinned = await self._get(
                ("pinned", cell.component, cell.env, branch),
                lambda: self._pinned(cell.component, cell.env, branch),
                fresh,
            )

    async def _live(
        self,
        cluster: Cluster,
        env: str,
        namespace: str,
        release: str,
        chart: str,
        deps: Got[list[DeploymentState]],
        fresh: bool,
    ) -> Got[str | None]:
        if not deps.ok:
            return Got(error=deps.error)
        found = live_from_deployments(deps.value or [], release, chart)
        if found is not None:
            return Got(found)
        # no labelled Deployment: ask the Helm release record
        return await self._get(
            ("live", env, namespace, release),
            lambda: cluster.live_version(namespace, release, chart),
            fresh,
        )

    async def _health(
        self,
        cluster: Cluster,
        env: str,
        namespace: str,
        deps: Got[list[DeploymentState]],
        fresh: bool,
        all_pods: bool,
    ) -> Got[Health]:
        if not deps.ok:
            return Got(error=deps.error)
        states = deps.value or []
        ready = sum(min(d.ready, d.desired) for d in states)
        desired = sum(d.desired for d in states)
        if not all_pods and ready >= desired and all(d.complete for d in states):
            return Got(Health(ready, desired, (), None))
        pods = await self._get(("pods", env, namespace), lambda: cluster.pods(namespace), fresh)
        if not pods.ok:
            return Got(error=pods.error)
        listed = tuple(pods.value or [])
        return Got(Health(ready, desired, tuple(problems_of(list(listed))), listed))

    async def _component(
        self,
        component: str,
        envs: Sequence[str],
        sources: dict[str, Cluster],
        fresh: bool,
        all_pods: bool,
    ) -> ComponentStatus:
        tags_task = asyncio.ensure_future(
            self._get(("tags", component), lambda: self._tags(component), fresh)
        )
        bump_task = asyncio.ensure_future(
            self._get(("bump", component), lambda: self._open_bump(component), fresh)
        )
        cells = await asyncio.gather(
            *(self._cell(component, e, sources.get(e), bump_task, fresh, all_pods) for e in envs)
        )
        return ComponentStatus(
            component, await tags_task, await bump_task, {c.env: c for c in cells}
        )

    async def gather(
        self,
        components: Sequence[str],
        envs: Sequence[str] | None = None,
        *,
        fresh: bool = False,
        all_pods: bool = False,
    ) -> list[ComponentStatus]:
        """Every component in every environment (default: all, in configured order).

        `fresh` skips the cache; `all_pods` lists pods even where every Deployment is ready
        (the monitors want restart counts; `!status` only needs pods when something is not).
        """
        cfg = self.services.config
        envs = list(envs) if envs is not None else cfg.env_names
        sources = live_sources(cfg, self.services.clusters)
        due = _due.set(asyncio.get_running_loop().time() + self.timeout)  # every source at once
        refreshing = _refreshing.set(None)
        try:
            snapshot = self._snapshot
            if snapshot is not None:  # every pin on main in one read, beside the other sources
                max_age = 0.0 if fresh else cfg.monitors.status_cache
                _refreshing.set(asyncio.ensure_future(self._refresh(snapshot, max_age)))
            found = await asyncio.gather(
                *(self._component(c, envs, sources, fresh, all_pods) for c in components)
            )
        finally:
            _due.reset(due)
            _refreshing.reset(refreshing)
        await self._annotate(found)
        await asyncio.gather(*(self._plan(status, fresh) for status in found))
        return list(found)

    async def _plan(self, status: ComponentStatus, fresh: bool) -> None:
        """The model's answers for the cells: the planner's advice per environment, and
        which environments contain the newest release (bounded like every source)."""
        c, model = status.component, self.model
        if set(status.cells) != set(self.services.config.env_names):
            return  # a partial gather: the planner needs every environment
        prefix = str(self.services.config.bot.prefix)
        seen = await self.seen(status)
        advice = await self._get(
            ("advice", c), lambda: env_advice(model, c, prefix, seen), fresh=True
        )
        for env, cell in status.cells.items():
            cell.advice = (advice.value or {}).get(env)
        latest = status.latest
        if latest is not None:
            got = await self._get(
                ("contains", c, latest.raw), lambda: model.contains(c, latest.raw, seen), True
            )
            status.contains_latest = got.value or {}

    async def seen(self, status: ComponentStatus) -> dict[str, Seen]:
        """What the cells read, as the model takes it."""
        return {env: await self._seen(cell) for env, cell in status.cells.items()}

    async def _seen(self, cell: Cell) -> Seen:
        """What the cell read, for the model (no second read of a hung cluster)."""
        pins = cell.pinned.value or [] if cell.pinned.ok else []
        pinned = pins[0] if pins else None
        if cell.live.error == NO_CLUSTER:  # no live state: what the bot last deployed
            running = await last_deployed(self.services.store, cell.component, cell.env)
        else:
            running = cell.live.value if cell.live.ok else None
        store = StoreSeen(cell.lock, cell.ack, cell.applied_commit) if cell.annotated else None
        return Seen(pinned, running, cell.release.value if cell.release.ok else None, store)

    async def _refresh(self, snapshot: PinSnapshot, max_age: float) -> None:
        got = await self._get(("pins",), lambda: snapshot.refresh(max_age), fresh=True)
        self._snapshot_error = got.error

    async def _annotate(self, found: Sequence[ComponentStatus]) -> None:
        """Locks, raised alerts and live ages: all from the store."""
        services = self.services
        alerts = await AlertStore(services.store).active()
        locks = await services.locks.all()
        acks = {(a.component, a.env): a for a in await Acks(services.store).all()}
        applied = await last_applied_commits(services.store)
        seen = await LiveSeen(services.store).all()
        deploying = {
            (d.component, d.env): (d.id, d.version, d.state)
            for d in await active_deploys(services.store)
        }
        for status in found:
            for cell in status.cells.values():
                mine = [lk for lk in locks if lk.component == cell.component]
                cell.lock = next((lk for lk in mine if lk.env == ALL_ENVS), None) or next(
                    (lk for lk in mine if lk.env == cell.env), None
                )
                cell.alerts = [
                    a for a in alerts if (a.component, a.env) == (cell.component, cell.env)
                ]
                cell.deploying = deploying.get((cell.component, cell.env))
                cell.ack = acks.get((cell.component, cell.env))
                cell.applied_commit = applied.get((cell.component, cell.env))
                cell.annotated = True
                version, since = seen.get((cell.component, cell.env), (None, None))
                if cell.live.value and version == cell.live.value:
                    cell.live_since = since
