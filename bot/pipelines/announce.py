"""Pipeline progress and built artifacts, announced.

Handlers for the event router: a component's pipeline is announced once per state change
(started, "stage k/n <name>", finished with duration and URL), compared with its last
state in the `pipelines` table, which also feeds `!where`/`!status`. When a default-branch
or tag pipeline succeeds, the version built for the commit is resolved (tag pipeline ref,
release tag on the commit, or the CI job log's `Pushed: <registry>/<repo>:<version>` line)
and the image, the chart and the next step are announced, and posted as a note on the MR
that introduced the commit. Those look-ups run in the background, after the final state was
announced, each under `gitlab.lookup_timeout`: a slow GitLab delays the artifacts line (or
makes it say why it is missing), never the next pipeline. This module owns the `pipelines`
table.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from bot.config.model import ComponentConfig, Config, GitlabConfig
from bot.core.errors import GitLabError
from bot.core.tasks import TaskSet
from bot.core.text import format_duration
from bot.core.versions import parse_version
from bot.delivery.announcer import Announcer
from bot.gitlab.events import (
    PIPELINE_FINAL_STATUSES,
    PipelineEvent,
    peek_pipeline,
    pipeline_state_key,
    stage_progress,
)
from bot.gitlab.inbox import Coalesce, Router
from bot.store.db import Store, StoreConn

if TYPE_CHECKING:  # python-gitlab is loaded only where GitLab is configured (bot.app)
    from bot.gitlab.api import GitLabAPI

log = logging.getLogger("deploybot.pipelines")

MAX_TRACES = 5
MAX_LOOKUPS = 8  # artifact look-ups running at once


@dataclass(frozen=True)
class Phase:
    """What the channel has been told about one pipeline: started, a stage, or a final status."""

    status: str
    stage: str | None  # "2/3 test"

    @property
    def final(self) -> bool:
        return self.status in PIPELINE_FINAL_STATUSES

    @property
    def step(self) -> int:
        return int(self.stage.split("/", 1)[0]) if self.stage else 0

    def covers(self, older: Phase) -> bool:
        """True if saying this makes saying `older` just before it needless (a burst of one
        pipeline's updates: the newest state is what is said). A final state covers only the
        same final state: failed then success are both said."""
        if older.final:
            return self == older
        return self.final or self.step >= older.step

    def supersedes(self, old: Phase | None) -> bool:
        """True if this is news after `old` (late and repeated deliveries are not)."""
        if old is None:
            return True
        if old.final:
            return self.final and self.status != old.status  # e.g. failed, retried, success
        return self.final or self.step > old.step


def pipeline_phase(body: Any) -> tuple[str, Phase] | None:
    """Which pipeline a delivery is about and what it would say, read from its body (the
    router's `Coalesce`: asked of every queued delivery, so without the typed parse)."""
    peeked = peek_pipeline(body)
    if peeked is None:
        return None
    key, status, progress = peeked
    return key, Phase(status, f"{progress[0]}/{progress[1]} {progress[2]}" if progress else None)


def phase_of(ev: PipelineEvent) -> Phase:
    progress = stage_progress(ev)
    stage = f"{progress[0]}/{progress[1]} {progress[2]}" if progress else None
    return Phase(ev.status, stage)


def registry_host(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url if "://" in url else f"//{url}")
    return parts.netloc or None


@dataclass(frozen=True)
class Artifacts:
    version: str
    image: str
    chart: str

    def line(self, component: str, sha: str) -> str:
        return (
            f"{component} {self.version}: image {self.image} · chart {self.chart}"
            f" · next: !deploy {component} {sha[:8]}"
        )


ArtifactsHook = Callable[[str, str, int, str | None], Awaitable[None]]


class PipelineAnnouncer:
    """Event handlers for pipelines; register them with `register(router)`."""

    def __init__(
        self, config: Config, store: Store, gitlab: GitLabAPI | None, announcer: Announcer
    ) -> None:
        self.config = config
        self.store = store
        self.gitlab = gitlab
        self.announcer = announcer
        self.gitlab_config = config.gitlab or GitlabConfig(url="")
        self._log_pattern = re.compile(self.gitlab_config.job_log_pattern)
        self._slots = asyncio.Semaphore(MAX_LOOKUPS)
        self._lookups = TaskSet()
        self._looking: set[tuple[str, str]] = set()
        # commits whose look-up note ("not found", "could not look up") was said: said once
        self._noted: dict[tuple[str, str], None] = {}
        # called once per commit whose artifacts were found: (component, version, pipeline
        # id, GitLab user); the composition root sets it (staging deployed from CI)
        self.on_artifacts: ArtifactsHook | None = None

    def register(self, router: Router) -> None:
        router.register("pipeline", self.on_pipeline)
        router.coalesce("pipeline", Coalesce(pipeline_phase, Phase.covers))

    def component_for(self, project_id: int, project_path: str) -> str | None:
        for name, comp in self.config.components.items():
            if comp.project_id == project_id or (comp.project and comp.project == project_path):
                return name
        return None

    def _announced(self, ev: PipelineEvent, comp: ComponentConfig) -> bool:
        if ev.merge_request_iid is not None or ev.source == "merge_request_event":
            return self.gitlab_config.announce_mr_pipelines
        if ev.tag or ev.ref == comp.default_branch:
            return True
        return any(
            fnmatch.fnmatchcase(ev.ref, glob) for glob in self.gitlab_config.announce_branches
        )

    @staticmethod
    def _releases_artifacts(ev: PipelineEvent, comp: ComponentConfig) -> bool:
        is_mr = ev.merge_request_iid is not None or ev.source == "merge_request_event"
        return not is_mr and (ev.tag or ev.ref == comp.default_branch)

    # pipelines

    async def on_pipeline(self, ev: PipelineEvent) -> None:
        row = await self.store.fetchone(
            "SELECT status, stage FROM pipelines WHERE project=? AND pipeline_id=?",
            (ev.project_path, ev.pipeline_id),
        )
        old = Phase(row["status"], row["stage"]) if row else None
        new = phase_of(ev)
        if not new.supersedes(old):
            return
        component = self.component_for(ev.project_id, ev.project_path)
        comp = self.config.components.get(component or "")
        look_up = False
        if component and comp and self._announced(ev, comp):
            await self.announcer.announce(
                self._progress_line(component, ev, new),
                component=component,
                key=pipeline_state_key(ev),
                final=new.final,
                short=self._short_line(component, ev, new),
            )
            look_up = ev.status == "success" and self._releases_artifacts(ev, comp)
        await self._record(ev, component, new, None)
        if look_up and component and comp:
            self._start_lookup(component, comp, ev)

    def _start_lookup(self, component: str, comp: ComponentConfig, ev: PipelineEvent) -> None:
        """Look the artifacts up off the announcement path (the final state is out already),
        one look-up per commit at a time, each under `gitlab.lookup_timeout`."""
        key = (ev.project_path, ev.sha)
        if key in self._looking:
            return  # the branch and the tag pipeline of one release: one look-up
        if self.gitlab is None and not ev.tag:
            return  # nothing to look it up in: say nothing about versions (it would be false)
        self._looking.add(key)
        self._lookups.spawn(
            self._lookup(component, comp, ev), name=f"lookup-{ev.sha[:8]}",
            on_done=lambda _: self._looking.discard(key),
        )  # fmt: skip

    async def _lookup(self, component: str, comp: ComponentConfig, ev: PipelineEvent) -> None:
        limit = self.gitlab_config.lookup_timeout
        started = time.monotonic()
        try:
            async with self._slots:
                started = time.monotonic()
                async with asyncio.timeout(limit):
                    version = await self._announce_artifacts(component, comp, ev)
        except TimeoutError:
            why = self.gitlab.trouble_since(started) if self.gitlab else None
            await self._note(
                ev,
                f"{component} {ev.sha[:8]}: artifacts could not be looked up within {limit:g}s"
                f" ({why or 'GitLab slow or unreachable'}); try !where {component} {ev.sha[:8]}",
                component=component,
            )
            return
        except Exception as exc:  # a look-up must never take the lane or the bot down
            log.exception("artifact look-up for %s %s failed", component, ev.sha[:8])
            await self._note(
                ev,
                f"{component} {ev.sha[:8]}: artifacts could not be looked up"
                f" ({type(exc).__name__}); try !where {component} {ev.sha[:8]}",
                component=component,
            )
            return
        if version is not None:
            await self.store.execute(
                "UPDATE pipelines SET version=? WHERE project=? AND pipeline_id=?",
                (version, ev.project_path, ev.pipeline_id),
            )

    async def wait_idle(self, timeout: float) -> bool:
        """Until no look-up runs; False on timeout."""
        return await self._lookups.wait_idle(timeout)

    async def stop(self) -> None:
        await self._lookups.stop()

    @staticmethod
    def _progress_line(component: str, ev: PipelineEvent, phase: Phase) -> str:
        if ev.tag:
            where = f"tag {ev.ref}"
        else:
            branch = f"MR !{ev.merge_request_iid}" if ev.merge_request_iid else ev.ref
            where = f"{branch} ({ev.sha[:8]})"
        head = f"{component}: pipeline {ev.pipeline_id} on {where}"
        if not phase.final:
            if phase.stage:
                return f"{head}: stage {phase.stage}"
            by = f" by gitlab:{ev.user}" if ev.user else ""
            title = f": {ev.commit_title[:80]}" if ev.commit_title else ""
            return f"{head} started{by}{title}"
        took = f" in {format_duration(ev.duration)}" if ev.duration is not None else ""
        failed = sorted({b.name for b in ev.builds if b.status == "failed"})
        jobs = f" (failed: {', '.join(failed[:3])})" if ev.status == "failed" and failed else ""
        return f"{head}: {ev.status}{took}{jobs} {ev.url}"

    @staticmethod
    def _short_line(component: str, ev: PipelineEvent, phase: Phase) -> str:
        """The form used when a backlog is packed: `builds-api #41 success 7m25s`."""
        state = ev.status if phase.final else (f"stage {phase.stage}" if phase.stage else "started")
        took = f" {format_duration(ev.duration)}" if phase.final and ev.duration is not None else ""
        return f"{component} #{ev.pipeline_id} {state}{took}"

    async def _record(
        self, ev: PipelineEvent, component: str | None, phase: Phase, version: str | None
    ) -> None:
        def upsert(conn: StoreConn) -> None:
            conn.execute(
                "INSERT INTO pipelines (project, pipeline_id, component, ref, sha, status, stage,"
                " version, url, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(project, pipeline_id) DO UPDATE SET component=excluded.component,"
                " ref=excluded.ref, sha=excluded.sha, status=excluded.status,"
                " stage=excluded.stage, version=COALESCE(excluded.version, pipelines.version),"
                " url=excluded.url, updated_at=excluded.updated_at",
                (ev.project_path, ev.pipeline_id, component, ev.ref, ev.sha, ev.status,
                 phase.stage, version, ev.url, time.time()),
            )  # fmt: skip

        # what was said is durable in the outbox already; this record only keeps a repeated
        # delivery from being said again, so a power cut (never a crash) may cost one repeat
        await self.store.transaction(upsert, durable=False)

    # artifacts

    async def _announce_artifacts(
        self, component: str, comp: ComponentConfig, ev: PipelineEvent
    ) -> str | None:
        """Announce what this success built; return the version (None if not found)."""
        seen = await self.store.fetchone(
            "SELECT version FROM pipelines WHERE project=? AND sha=? AND pipeline_id != ?"
            " AND version IS NOT NULL",
            (ev.project_path, ev.sha, ev.pipeline_id),
        )
        if seen is not None:  # the branch and the tag pipeline of one release: announce once
            return str(seen["version"])
        failures: list[str] = []
        found = await self.resolve_artifacts(component, comp, ev, failures)
        if found is None and failures:  # not "none found": GitLab did not let us look
            await self._note(
                ev,
                f"{component} {ev.sha[:8]}: artifacts could not be looked up ({failures[0]});"
                f" try !where {component} {ev.sha[:8]}",
                component=component,
            )
            return None
        if found is None:
            if self.gitlab is None:
                return None  # nothing was looked up: no line about it
            await self._note(
                ev,
                f"{component} {ev.sha[:8]}: no release version found for this commit"
                " (no release tag on it, no matching line in the job logs)",
                component=component,
            )
            return None
        text = found.line(component, ev.sha)
        await self.announcer.announce(text, component=component)
        await self._note_on_mr(component, ev, found)
        if self.on_artifacts is not None:  # `deploy_on_pipeline` environments
            await self.on_artifacts(component, found.version, ev.pipeline_id, ev.user)
        return found.version

    async def _note(self, ev: PipelineEvent, text: str, *, component: str) -> None:
        """A look-up note for a commit, said once for that commit (not once per pipeline:
        a busy commit was 148 identical lines, half the outbox)."""
        key = (ev.project_path, ev.sha)
        if key in self._noted:
            return
        self._noted[key] = None
        if len(self._noted) > 1000:
            del self._noted[next(iter(self._noted))]
        await self.announcer.announce(text, component=component)

    async def resolve_artifacts(
        self, component: str, comp: ComponentConfig, ev: PipelineEvent, failures: list[str]
    ) -> Artifacts | None:
        """What the pipeline built, or None; GitLab calls that failed are added to `failures`."""
        registry = registry_host(self.config.registry.url) if self.config.registry else None
        repo: str | None = None
        version = await self._version_from_tags(ev, failures)
        if version is None:
            from_log = await self._version_from_logs(ev, failures)
            if from_log is None:
                return None
            version, log_registry, repo = from_log
            registry = registry or log_registry
        image = comp.image or repo or component
        chart = comp.chart or comp.image or repo or component
        if registry:
            return Artifacts(version, f"{registry}/{image}:{version}",
                             f"oci://{registry}/{chart}:{version}")  # fmt: skip
        return Artifacts(version, f"{image}:{version}", f"{chart}:{version}")

    async def _version_from_tags(self, ev: PipelineEvent, failures: list[str]) -> str | None:
        """The tag pipeline's own name, else the newest release tag on the commit."""
        own = parse_version(ev.ref) if ev.tag else None
        if own is not None and own.is_release:
            return own.raw
        if self.gitlab is None:
            return None
        try:
            tags = await self.gitlab.list_tags(ev.project_path)
        except GitLabError as exc:
            log.warning("cannot list tags of %s: %s", ev.project_path, exc)
            if exc.status != 404:
                failures.append(str(exc))
            return None
        releases = [v for t in tags if t.commit == ev.sha and (v := parse_version(t.name))]
        releases = [v for v in releases if v.is_release]
        return max(releases, key=lambda v: v.sort_key).raw if releases else None

    async def _version_from_logs(
        self, ev: PipelineEvent, failures: list[str]
    ) -> tuple[str, str | None, str | None] | None:
        """(version, registry, repo) from the last `Pushed:` line of the latest stages' jobs."""
        if self.gitlab is None:
            return None
        order = {stage: i for i, stage in enumerate(ev.stages)}
        jobs = sorted(
            (b for b in ev.builds if b.status == "success"),
            key=lambda b: (order.get(b.stage, -1), b.id),
            reverse=True,
        )
        for job in jobs[:MAX_TRACES]:
            try:
                trace = await self.gitlab.job_trace(ev.project_path, job.id)
            except GitLabError as exc:
                log.warning("cannot read the log of job %d: %s", job.id, exc)
                if exc.status != 404:  # a log that is gone has no line; others: not looked
                    failures.append(str(exc))
                continue
            matches = list(self._log_pattern.finditer(trace))
            if matches:
                groups = matches[-1].groupdict()
                return groups["version"], groups.get("registry"), groups.get("repo")
        return None

    async def _note_on_mr(self, component: str, ev: PipelineEvent, found: Artifacts) -> None:
        gitlab = self.gitlab
        if gitlab is None or not self.gitlab_config.mr_notes:
            return
        room = self.announcer.room_for(component)
        body = (
            f"Pipeline [{ev.pipeline_id}]({ev.url}) built `{found.version}`:\n\n"
            f"- image `{found.image}`\n- chart `{found.chart}`\n\n"
            f"Next step, in {room}: `!deploy {component} {ev.sha[:8]}`"
        )
        try:
            mrs = await gitlab.commit_merge_requests(ev.project_path, ev.sha)
            mr = next((m for m in mrs if m.get("state") == "merged"), mrs[0] if mrs else None)
            if mr is not None:
                await gitlab.post_mr_note(ev.project_path, int(mr["iid"]), body)
        except (GitLabError, KeyError, TypeError, ValueError) as exc:
            log.warning(
                "cannot comment on the MR of %s in %s: %s", ev.sha[:8], ev.project_path, exc
            )


async def mr_build_version(store: Store, component: str, iid: int) -> str | None:
    """The version the newest successful pipeline built for MR `iid` (`...-dev-mr-<iid>`)."""
    row = await store.fetchone(
        "SELECT version FROM pipelines WHERE component = ? AND version LIKE ?"
        " AND status = 'success' ORDER BY updated_at DESC LIMIT 1",
        (component, f"%-dev-mr-{iid}"),
    )
    return str(row["version"]) if row and row["version"] else None


@dataclass(frozen=True)
class PipelineSeen:
    status: str
    url: str | None


async def newest_pipeline(
    store: Store, component: str, sha: str | None, version: str | None
) -> PipelineSeen | None:
    """The newest pipeline the store knows for that commit (prefix) or version."""
    if sha is None and version is None:
        return None
    row = await store.fetchone(
        "SELECT status, url FROM pipelines WHERE component = ? AND (sha LIKE ? OR version = ?)"
        " ORDER BY updated_at DESC LIMIT 1",
        (component, f"{sha}%" if sha else "-", version or "-"),
    )
    return PipelineSeen(row["status"], row["url"]) if row else None


@dataclass(frozen=True)
class NewestPipeline:
    """A component's newest announced pipeline, for the board."""

    pipeline_id: int
    ref: str | None
    sha: str | None
    status: str
    stage: str | None  # "2/3 test" while running
    url: str | None
    updated_at: float


async def newest_pipelines(store: Store) -> dict[str, NewestPipeline]:
    """component -> its most recently updated pipeline."""
    rows = await store.fetchall(
        "SELECT component, pipeline_id, ref, sha, status, stage, url, updated_at FROM pipelines"
        " WHERE component IS NOT NULL ORDER BY updated_at"
    )
    return {
        r["component"]: NewestPipeline(
            r["pipeline_id"], r["ref"], r["sha"], r["status"], r["stage"], r["url"], r["updated_at"]
        )
        for r in rows
    }
