"""The monitors: what will bite before it bites, said once.

Every `monitors.interval`, and soon after a relevant webhook, one check reads the same
sources as `!status` (fresh) and looks for: drift (live != pinned on main), releases merged
but not deployed to production, Helm releases left failed or pending, unhealthy pods
(failing waiting reasons, restart counts rising) and live, pinned or `previous` versions whose image or chart is gone from the
registry. `bot.store.alerts` turns the findings into raise/remind/clear announcements; the state
is stored, shown by `!status` and exported as `deploybot_monitor_alerts{kind}`. With
`registry.protect`, the in-use artifacts are then kept labelled in Harbor (`bot.monitors.protect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from bot.cluster.helmrecords import PENDING
from bot.cluster.kube import PodProblem
from bot.cluster.livestate import LiveSeen, target_of
from bot.cluster.registry import RegistryError, oci_tag
from bot.control.bumper import Bumper
from bot.core.tasks import within
from bot.core.versions import Version, newer_than, parse_version, release_versions
from bot.deploy.records import RolledBack, deliberate_rollback
from bot.gitlab.inbox import Router
from bot.model.planner import Advice
from bot.model.state import Model
from bot.model.views import version_view
from bot.monitors.digests import digest_findings
from bot.monitors.hygiene import CertRestarts, cert_restart_findings, hygiene_findings
from bot.monitors.protect import artifact_repos, protect, wanted_tags
from bot.monitors.restarts import RestartWatch
from bot.monitors.unapplied import UnappliedMonitor
from bot.services import Services
from bot.status.board import NO_CLUSTER, Cell, ComponentStatus, Got, Health, StatusBoard
from bot.store.acks import Acks
from bot.store.alerts import DELIBERATE, KINDS, Action, Alert, AlertStore, Finding, Key, Scope, plan

log = logging.getLogger("deploybot.monitors")

T = TypeVar("T")
WEBHOOK_KINDS = ("pipeline", "merge_request", "tag_push", "push", "deployment")


def drift_finding(cell: Cell) -> Finding | None:
    """Live differs from every pin on main (call only when both are known); the planner's
    next step ends the text (a pin behind what runs is not advised to be applied)."""
    if not cell.drifted:
        return None
    pins = ",".join(cell.pinned.value or [])
    text = f"live {cell.live.value}, main pins {pins}"
    if cell.advice is not None and cell.advice.command is not None:
        text += f"; {cell.advice.line()}"
    return Finding("drift", cell.component, cell.env, "", text)


async def not_in_prod(
    model: Model, status: ComponentStatus, prod: str, running: str | None
) -> list[Version]:
    """Releases newer than the production pin that what runs there does not contain
    either (by ancestry: a pin that went back while a newer release runs is not
    "undeployed"), oldest first."""
    pins = [v for v in map(parse_version, status.cells[prod].pinned.value or []) if v]
    if not pins or not release_versions(status.tags.value or []):
        return []
    base = max(pins, key=lambda v: v.sort_key)
    newer = [v for v in newer_than(status.tags.value or [], base) if not v.is_prerelease]
    return [
        v
        for v in newer
        if not await model.history.contains(status.component, running, v.raw)
        and not await model.history.is_ancestor(status.component, v.raw, base.raw)
    ]


def undeployed_finding(
    status: ComponentStatus, prod: str, newer: list[Version],
    rolled_back: RolledBack | None = None, advice: Advice | None = None,
) -> Finding | None:  # fmt: skip
    """Releases merged but not in production (`not_in_prod`). Its age counts from when the
    bot first saw it (not the tag's build time); after a deliberate rollback, until anyone
    deploys again, it says so instead of advising to redeploy what was rolled back; else the
    planner's next step for the newest release ends it."""
    if not newer:
        return None
    pins = status.cells[prod].pinned.value or []
    count = f"{len(newer)} release{'s' if len(newer) > 1 else ''}"
    text = (
        f"{count} merged but not deployed to {prod} (newest {newer[-1].raw}, {prod} pins "
        f"{','.join(pins)})"
    )
    if rolled_back is not None:
        text += f"; {rolled_back.describe()}: {DELIBERATE}"
    elif advice is not None and advice.command is not None:
        text += f"; {advice.line()}"
    return Finding("undeployed", status.component, prod, "", text)


def helm_release_finding(cell: Cell) -> Finding | None:
    """The Helm release's newest record is failed or pending (a pending one while this bot
    deploys it is expected, and not reported)."""
    state = cell.release_trouble
    if state is None or (state.status in PENDING and cell.deploying is not None):
        return None
    text = f"{state.describe()}; next: {state.next_step(cell.component, cell.env)}"
    return Finding("helm-release", cell.component, cell.env, "", text)


def unhealthy_finding(cell: Cell, problems: list[PodProblem]) -> Finding | None:
    if not problems:
        return None
    text = "; ".join(p.describe()[:120] for p in problems[:2])
    if len(problems) > 2:
        text += f" (+{len(problems) - 2} more)"
    return Finding("unhealthy", cell.component, cell.env, "", text)


@dataclass
class _Check:
    findings: list[Finding] = field(default_factory=list)
    checked: set[Scope] = field(default_factory=set)
    in_use: dict[str, set[str]] = field(default_factory=dict)  # component -> versions
    incomplete: set[str] = field(default_factory=set)  # components with unknown in-use parts
    missing: set[tuple[str, str]] = field(default_factory=set)  # (repository, tag) gone


class Monitors:
    """Owned by the composition root; `run()` goes under the supervisor."""

    def __init__(
        self,
        services: Services,
        bumper: Bumper | None,
        board: StatusBoard | None = None,
        *,
        clock: Callable[[], float] = time.time,
        unapplied: UnappliedMonitor | None = None,
        restarts: RestartWatch | None = None,
    ) -> None:
        self.services = services
        self.restarts = restarts  # announces restarts nobody deployed, once each
        self.unapplied = unapplied  # its latest answers become `unapplied` alerts
        self.bumper = bumper
        self.clock = clock
        self.board = board or StatusBoard(services, bumper, clock=clock)
        self.alerts = AlertStore(services.store)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._stopped = False
        self._checked_once = asyncio.Event()
        self._restarts: dict[tuple[str, str, str, str], tuple[int, float | None]] = {}
        self._previous: dict[tuple[str, str, tuple[str, ...], str | None], str | None] = {}
        self._registry_calls = asyncio.Semaphore(16)
        self._history_reads = asyncio.Semaphore(4)

    # --- scheduling ------------------------------------------------------------------------

    def register(self, router: Router) -> None:
        """Check soon after webhooks that can change what is pinned, built or live."""
        router.after(WEBHOOK_KINDS, self.wake)  # once per batch of events, not per event

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """Check now, then every `monitors.interval` or when woken (unless disabled)."""
        if not self.services.config.monitors.enabled:
            return
        while not self._stopped:
            self._wake.clear()
            try:
                await self.check_now()
            except Exception:
                log.exception("monitor check failed; next one in %ss", self.interval)
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), self.interval)

    async def stop(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Run no more checks; let a running one finish (at most `timeout` s), so shutdown
        does not cancel it halfway through its git and API calls."""
        self._stopped = True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout), self._lock:
                pass

    @property
    def interval(self) -> float:
        return self.services.config.monitors.interval

    async def wait_first_check(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Until one check has finished (True), or `timeout` seconds (False)."""
        if not self.services.config.monitors.enabled:
            return False
        with contextlib.suppress(TimeoutError):
            await within(self._checked_once.wait(), timeout)
        return self._checked_once.is_set()

    # --- one check -------------------------------------------------------------------------

    async def check_now(self) -> list[Action]:
        """Run every monitor once; announce, store and export what changed."""
        async with self._lock:
            now = self.clock()
            check = await self._check(now)
            cfg = self.services.config.monitors
            grace = {"drift": cfg.drift_grace, "undeployed": cfg.undeployed_after}
            stored = await self.alerts.load()
            actions, state = plan(
                check.findings, stored, check.checked,
                now=now, grace=grace, remind_every=cfg.remind_every,
            )  # fmt: skip
            for action in actions:
                await self.services.announcer.announce(
                    action.line(now),
                    component=action.alert.component,
                    key=action.announce_key,
                    final=True,
                )
            await self.alerts.save(state)
            self._export(state)
            await self._protect(check)
            if self.restarts is not None:
                await self.restarts.check(now)
            self._checked_once.set()
            return actions

    def _export(self, state: Mapping[Key, Alert]) -> None:
        for kind in KINDS:
            raised = [a for a in state.values() if a.kind == kind and a.raised]
            self.services.metrics.alerts.labels(kind).set(len(raised))

    async def _check(self, now: float) -> _Check:
        cfg = self.services.config
        statuses = await self.board.gather(list(cfg.components), fresh=True, all_pods=True)
        check = _Check()
        seen = LiveSeen(self.services.store)
        prod = cfg.env_names[-1] if cfg.env_names else None
        for status in statuses:
            for cell in status.cells.values():
                if cell.live.value:
                    await seen.note(cell.component, cell.env, cell.live.value, now)
                if cell.pinned.ok and cell.live.ok:
                    check.checked.add(("drift", cell.component, cell.env))
                    self._add(check, drift_finding(cell))
                if cell.release.ok and cell.live.error != NO_CLUSTER:
                    check.checked.add(("helm-release", cell.component, cell.env))
                    self._add(check, helm_release_finding(cell))
                if cell.health.value is not None:
                    check.checked.add(("unhealthy", cell.component, cell.env))
                    problems = self._pod_problems(cell, cell.health.value, now)
                    self._add(check, unhealthy_finding(cell, problems))
            if prod is not None and status.tags.ok and status.cells[prod].pinned.ok:
                check.checked.add(("undeployed", status.component, prod))
                self._add(check, await self._undeployed(status, prod))
        await self._artifacts(statuses, check)
        # independent reads of the clusters and the registry: at once, so a cluster that does
        # not answer costs the round one source timeout, not one per monitor
        digests, hygiene, restarts = await asyncio.gather(
            digest_findings(self.services, statuses),
            hygiene_findings(self.services, now),
            cert_restart_findings(self.services, statuses),
        )
        for found, scopes in (digests, hygiene):
            check.findings += found
            check.checked |= scopes
        _fold(check, restarts)
        if self.unapplied is not None:
            advice = {(c.component, c.env): c.advice for s in statuses for c in s.cells.values()}
            found, scopes = self.unapplied.findings(advice)
            check.findings += found
            check.checked |= scopes
        return check

    async def _undeployed(self, status: ComponentStatus, prod: str) -> Finding | None:
        c, model = status.component, self.board.model
        seen = await self.board.seen(status)
        newer = await not_in_prod(model, status, prod, seen[prod].running)
        ack = await Acks(self.services.store).get(c, prod)
        if ack is not None:  # acked releases are not "undeployed"; a newer one is
            newer = [v for v in newer if not ack.covers(v.raw)]
        if not newer:
            return None
        back = await deliberate_rollback(self.services.store, c, prod)
        prefix = str(self.services.config.bot.prefix)
        view = await version_view(model, c, newer[-1].raw, prefix=prefix, seen=seen)
        return undeployed_finding(status, prod, newer, back, view.advice)

    async def in_use(self, component: str) -> tuple[dict[str, list[str]], list[str]]:
        """Version -> roles (`live in tools`, ...) of component in every environment, and the
        environments where live, pinned or previous could not be read (`!prune plan`)."""
        [status] = await self.board.gather([component], fresh=True)
        roles: dict[str, list[str]] = {}
        unknown = []
        for cell in status.cells.values():
            found, complete = await self._roles(cell)
            if not complete:
                unknown.append(cell.env)
            for version, rs in found.items():
                roles.setdefault(version, []).extend(f"{r} in {cell.env}" for r in rs)
        return roles, unknown

    @staticmethod
    def _add(check: _Check, finding: Finding | None) -> None:
        if finding is not None:
            check.findings.append(finding)

    def _pod_problems(self, cell: Cell, health: Health, now: float) -> list[PodProblem]:
        """Failing waiting reasons, plus containers whose restart count rose recently."""
        problems = list(health.problems)
        failing = {(p.pod, p.container) for p in problems}
        window = 3 * self.interval
        namespace = target_of(self.services.config, cell.component).namespace
        listed = {
            (cell.env, namespace, p.name, c.name) for p in health.pods or () for c in p.containers
        }
        for gone in [
            k for k in self._restarts if k[:2] == (cell.env, namespace) and k not in listed
        ]:
            del self._restarts[gone]  # the pod went away
        for pod in health.pods or ():
            for c in pod.containers:
                key = (cell.env, namespace, pod.name, c.name)
                before = self._restarts.get(key)
                rose_at = before[1] if before else None
                if before is not None and c.restart_count > before[0]:
                    rose_at = now
                self._restarts[key] = (c.restart_count, rose_at)
                recent = rose_at is not None and now - rose_at <= window
                if recent and (pod.name, c.name) not in failing:
                    message = f"{c.restart_count} restarts, rising"
                    problems.append(
                        PodProblem(pod.name, c.name, "Restarting", message, c.restart_count)
                    )
        return problems

    # --- missing artifacts and protection --------------------------------------------------

    async def _timed(self, fetch: Callable[[], Awaitable[T]]) -> Got[T]:
        try:
            timeout = self.services.config.monitors.source_timeout
            return Got(await within(fetch(), timeout))
        except TimeoutError:
            return Got(error="timed out")
        except Exception as exc:  # one line; the caller only needs to know it is unknown
            return Got(error=str(exc) if isinstance(exc, RegistryError) else type(exc).__name__)

    async def _previous_of(self, cell: Cell) -> Got[str | None]:
        bumper = self.bumper
        if bumper is None:
            return Got(None)
        live = cell.live.value if cell.live.ok else None
        key = (cell.component, cell.env, tuple(cell.pinned.value or []), live)
        if key in self._previous:
            return Got(self._previous[key])
        model = self.board.model  # the version `!rollback` would go back to
        async with self._history_reads:  # each reads the pin file's git history
            got = await self._timed(lambda: model.previous(cell.component, cell.env))
        if got.ok:
            self._previous[key] = got.value
        return got

    async def _roles(self, cell: Cell) -> tuple[dict[str, list[str]], bool]:
        """Version -> roles (live, pinned, previous) in a cell; and whether all are known."""
        roles: dict[str, list[str]] = {}
        previous = await self._previous_of(cell) if cell.pinned.ok else Got[str | None]()
        live = cell.live.value if cell.live.ok and cell.live.value else None
        named = [("live", live)] + [("pinned", v) for v in cell.pinned.value or []]
        for role, version in named + [("previous", previous.value)]:
            if version and not version.startswith("mixed: "):
                roles.setdefault(version, []).append(role)
        complete = cell.pinned.ok and previous.ok and cell.live.error in (None, NO_CLUSTER)
        return roles, complete

    async def _artifacts(self, statuses: list[ComponentStatus], check: _Check) -> None:
        cfg = self.services.config
        registry = self.services.registry
        cells = [cell for status in statuses for cell in status.cells.values()]
        found = await asyncio.gather(*(self._roles(cell) for cell in cells))
        per_cell = [
            (cell, roles, complete) for cell, (roles, complete) in zip(cells, found, strict=True)
        ]
        for cell, roles, complete in per_cell:
            check.in_use.setdefault(cell.component, set()).update(roles)
            if not complete:
                check.incomplete.add(cell.component)
        if registry is None:
            return
        wanted = {
            (repo, version)
            for cell, roles, _ in per_cell
            for repo in artifact_repos(cfg, cell.component)
            for version in roles
        }
        keys = sorted(wanted)
        answers = await asyncio.gather(*(self._exists(repo, v) for repo, v in keys))
        exists = dict(zip(keys, answers, strict=True))
        for cell, roles, complete in per_cell:
            comp = cfg.components[cell.component]
            answered = complete
            for version, used_as in roles.items():
                for kind, repo in (("image", comp.image), ("chart", comp.chart)):
                    if not repo or comp.helm_repo:  # upstream charts are not in our registry
                        continue
                    got = exists[(repo, version)]
                    answered = answered and got.ok
                    if got.value is False:
                        check.missing.add((registry.repository_path(repo), oci_tag(version)))
                        detail = f"{kind} {registry.repository_path(repo)}:{version}"
                        check.findings.append(_missing_finding(cell, detail, version, used_as))
            if answered:
                check.checked.add(("missing-artifact", cell.component, cell.env))
                check.checked.add(("rollback-target-missing", cell.component, cell.env))

    async def _exists(self, repo: str, version: str) -> Got[bool]:
        registry = self.services.registry
        assert registry is not None
        async with self._registry_calls:
            return await self._timed(lambda: registry.manifest_exists(repo, version))

    async def _protect(self, check: _Check) -> None:
        cfg = self.services.config.registry
        registry = self.services.registry
        if cfg is None or not cfg.protect or registry is None or registry.kind != "harbor":
            return
        config = self.services.config
        wanted = wanted_tags(config, registry, check.in_use)
        wanted = {
            repo: {t for t in tags if (repo, t) not in check.missing}
            for repo, tags in wanted.items()
        }
        complete = [c for c in config.components if c not in check.incomplete]
        prune = {registry.repository_path(r) for c in complete for r in artifact_repos(config, c)}
        # a repository shared with a component whose in-use versions are unknown is not pruned
        for c in check.incomplete:
            prune -= {registry.repository_path(r) for r in artifact_repos(config, c)}
        report = await protect(registry, cfg.protect_label, wanted, prune)
        line = report.line(cfg.protect_label)
        if line is not None:
            await self.services.announcer.announce(line, key="registry-protection", final=True)


def _missing_finding(cell: Cell, detail: str, version: str, roles: list[str]) -> Finding:
    """A live or pinned version's artifact gone: `missing-artifact` (the next restart or
    deploy fails). Only the `previous` one, which `!rollback` picks (`Bumper.previous`, the
    same choice): `rollback-target-missing`, its own kind, so it is seen apart."""
    c, env = cell.component, cell.env
    if "live" in roles or "pinned" in roles:
        text = f"{detail} ({', '.join(roles)}) is gone from the registry: the next restart or deploy will fail"
        return Finding("missing-artifact", c, env, detail, text)
    text = (
        f"!rollback {c} {env} would return to {version} (previous), but {detail} is gone"
        " from the registry: that rollback would be refused"
    )
    return Finding("rollback-target-missing", c, env, detail, text)


def _fold(check: _Check, restarts: CertRestarts) -> None:
    """Add the `cert-restart` findings. An image one of them found MISSING is named there
    (the restart that will pull it is the news), not again as `missing-artifact`; a
    `missing-artifact` alert raised before stays as it was."""
    check.findings += restarts.findings
    check.checked |= restarts.checked
    for (c, env), gone in restarts.missing.items():
        named = {f"image {repo}:{tag}" for repo, tag in gone}
        named |= {f"image {repo}:{tag.replace('_', '+')}" for repo, tag in gone}
        before = len(check.findings)
        check.findings = [
            f for f in check.findings
            if not (f.kind == "missing-artifact" and (f.component, f.env) == (c, env) and f.detail in named)
        ]  # fmt: skip
        if len(check.findings) != before:
            check.checked.discard(("missing-artifact", c, env))
