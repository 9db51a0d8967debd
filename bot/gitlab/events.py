"""Turn GitLab webhook bodies into typed, immutable events, with no I/O.

Like gidgethub's `sansio`: the webhook server verifies the request and hands the header
and decoded JSON here; everything downstream (router, announcer) works with these values.
A body that lacks a field we rely on raises `MalformedEvent` naming the field's path
(`object_attributes.stages`); extra fields are ignored; unknown kinds give `None`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from bot.gitlab.fields import Fields, MalformedEvent, type_name

ZERO_SHA = "0" * 40
PIPELINE_FINAL_STATUSES = frozenset({"success", "failed", "canceled", "skipped"})
_STAGE_REACHED = frozenset({"running", "success", "failed", "canceled"})


@dataclass(frozen=True)
class _Project:
    id: int
    path: str
    web_url: str


def _project(body: Fields) -> _Project:
    project = body.req_obj("project")
    return _Project(
        id=project.req_int("id"),
        path=project.req_str("path_with_namespace"),
        web_url=project.req_str("web_url").rstrip("/"),
    )


def _username(body: Fields, key: str = "user") -> str | None:
    user = body.opt_obj(key)
    return None if user is None else user.opt_str("username")


@dataclass(frozen=True)
class BuildInfo:
    id: int
    name: str
    stage: str
    status: str


@dataclass(frozen=True)
class PipelineEvent:
    kind: ClassVar[str] = "pipeline"
    project_id: int
    project_path: str
    pipeline_id: int
    ref: str
    tag: bool
    sha: str
    before_sha: str
    status: str
    source: str
    stages: tuple[str, ...]
    builds: tuple[BuildInfo, ...]
    created_at: str | None
    finished_at: str | None
    duration: int | None
    url: str
    merge_request_iid: int | None
    user: str | None
    commit_title: str | None

    @property
    def is_final(self) -> bool:
        return self.status in PIPELINE_FINAL_STATUSES


@dataclass(frozen=True)
class JobEvent:
    kind: ClassVar[str] = "job"
    project_id: int
    project_path: str
    job_id: int
    name: str
    stage: str
    status: str
    ref: str
    tag: bool
    sha: str
    pipeline_id: int
    duration: float | None
    failure_reason: str | None
    allow_failure: bool
    url: str
    user: str | None


@dataclass(frozen=True)
class PushEvent:
    kind: ClassVar[str] = "push"
    project_id: int
    project_path: str
    ref: str
    before: str
    after: str
    commits_count: int
    user: str | None

    @property
    def branch(self) -> str:
        return self.ref.removeprefix("refs/heads/")


@dataclass(frozen=True)
class TagPushEvent:
    kind: ClassVar[str] = "tag_push"
    project_id: int
    project_path: str
    tag: str
    sha: str
    message: str | None
    user: str | None

    @property
    def deleted(self) -> bool:
        return self.sha == ZERO_SHA


@dataclass(frozen=True)
class MergeRequestEvent:
    kind: ClassVar[str] = "merge_request"
    project_id: int
    project_path: str
    iid: int
    action: str | None
    state: str
    source_branch: str
    target_branch: str
    title: str
    description: str | None
    url: str
    author_id: int | None
    user: str | None
    last_commit_sha: str | None
    merge_commit_sha: str | None
    changed: tuple[str, ...]


@dataclass(frozen=True)
class DeploymentEvent:
    kind: ClassVar[str] = "deployment"
    project_id: int
    project_path: str
    deployment_id: int
    status: str
    environment: str
    ref: str | None
    sha: str | None
    deployable_url: str | None
    commit_title: str | None
    status_changed_at: str | None
    user: str | None


Event = PipelineEvent | JobEvent | PushEvent | TagPushEvent | MergeRequestEvent | DeploymentEvent


def _expect_kind(body: Fields, *kinds: str) -> None:
    kind = body.opt_str("object_kind")
    if kind is not None and kind not in kinds:
        raise MalformedEvent(f"object_kind: expected {' or '.join(kinds)}, got {kind!r}")


def parse_pipeline(data: Any) -> PipelineEvent:
    body = Fields(data)
    _expect_kind(body, "pipeline")
    project = _project(body)
    attrs = body.req_obj("object_attributes")
    stages = attrs.req_list("stages")
    for i, stage in enumerate(stages):
        if not isinstance(stage, str):
            raise MalformedEvent(f"object_attributes.stages[{i}]: expected a string")
    builds = []
    for i, raw in enumerate(body.opt_list("builds")):
        build = Fields(raw, f"builds[{i}]")
        builds.append(
            BuildInfo(
                build.req_int("id"),
                build.req_str("name"),
                build.req_str("stage"),
                build.req_str("status"),
            )
        )
    merge_request = body.opt_obj("merge_request")
    commit = body.opt_obj("commit")
    pipeline_id = attrs.req_int("id")
    return PipelineEvent(
        project_id=project.id,
        project_path=project.path,
        pipeline_id=pipeline_id,
        ref=attrs.req_str("ref"),
        tag=attrs.req_bool("tag"),
        sha=attrs.req_str("sha"),
        before_sha=attrs.opt_str("before_sha") or ZERO_SHA,
        status=attrs.req_str("status"),
        source=attrs.opt_str("source") or "unknown",
        stages=tuple(stages),
        builds=tuple(builds),
        created_at=attrs.opt_str("created_at"),
        finished_at=attrs.opt_str("finished_at"),
        duration=attrs.opt_int("duration"),
        url=f"{project.web_url}/-/pipelines/{pipeline_id}",
        merge_request_iid=None if merge_request is None else merge_request.req_int("iid"),
        user=_username(body),
        commit_title=None if commit is None else commit.opt_str("title"),
    )


def parse_job(data: Any) -> JobEvent:
    body = Fields(data)
    _expect_kind(body, "build")
    project = _project(body)
    job_id = body.req_int("build_id")
    return JobEvent(
        project_id=project.id,
        project_path=project.path,
        job_id=job_id,
        name=body.req_str("build_name"),
        stage=body.req_str("build_stage"),
        status=body.req_str("build_status"),
        ref=body.req_str("ref"),
        tag=body.req_bool("tag"),
        sha=body.req_str("sha"),
        pipeline_id=body.req_int("pipeline_id"),
        duration=body.opt_number("build_duration"),
        failure_reason=body.opt_str("build_failure_reason"),
        allow_failure=body.opt_bool("build_allow_failure") or False,
        url=f"{project.web_url}/-/jobs/{job_id}",
        user=_username(body),
    )


def parse_push(data: Any) -> PushEvent:
    body = Fields(data)
    _expect_kind(body, "push")
    project = _project(body)
    commits = body.opt_list("commits")
    total = body.opt_int("total_commits_count")
    return PushEvent(
        project_id=project.id,
        project_path=project.path,
        ref=body.req_str("ref"),
        before=body.req_str("before"),
        after=body.req_str("after"),
        commits_count=len(commits) if total is None else total,
        user=body.opt_str("user_username"),
    )


def parse_tag_push(data: Any) -> TagPushEvent:
    body = Fields(data)
    _expect_kind(body, "tag_push")
    project = _project(body)
    ref = body.req_str("ref")
    if not ref.startswith("refs/tags/"):
        raise MalformedEvent(f"ref: expected refs/tags/<name>, got {ref!r}")
    return TagPushEvent(
        project_id=project.id,
        project_path=project.path,
        tag=ref.removeprefix("refs/tags/"),
        sha=body.req_str("after"),
        message=body.opt_str("message"),
        user=body.opt_str("user_username"),
    )


def parse_merge_request(data: Any) -> MergeRequestEvent:
    body = Fields(data)
    _expect_kind(body, "merge_request")
    project = _project(body)
    attrs = body.req_obj("object_attributes")
    iid = attrs.req_int("iid")
    last_commit = attrs.opt_obj("last_commit")
    changes = body.opt_obj("changes")
    return MergeRequestEvent(
        project_id=project.id,
        project_path=project.path,
        iid=iid,
        action=attrs.opt_str("action"),
        state=attrs.req_str("state"),
        source_branch=attrs.req_str("source_branch"),
        target_branch=attrs.req_str("target_branch"),
        title=attrs.req_str("title"),
        description=attrs.opt_str("description"),
        url=attrs.opt_str("url") or f"{project.web_url}/-/merge_requests/{iid}",
        author_id=attrs.opt_int("author_id"),
        user=_username(body),
        last_commit_sha=None if last_commit is None else last_commit.req_str("id"),
        merge_commit_sha=attrs.opt_str("merge_commit_sha"),
        changed=() if changes is None else changes.keys(),
    )


def parse_deployment(data: Any) -> DeploymentEvent:
    body = Fields(data)
    _expect_kind(body, "deployment")
    project = _project(body)
    commit_url = body.opt_str("commit_url")
    sha = commit_url.rsplit("/", 1)[-1] if commit_url else body.opt_str("short_sha")
    return DeploymentEvent(
        project_id=project.id,
        project_path=project.path,
        deployment_id=body.req_int("deployment_id"),
        status=body.req_str("status"),
        environment=body.req_str("environment"),
        ref=body.opt_str("ref"),
        sha=sha,
        deployable_url=body.opt_str("deployable_url"),
        commit_title=body.opt_str("commit_title"),
        status_changed_at=body.opt_str("status_changed_at"),
        user=_username(body),
    )


Parser = Callable[[Any], Event]

EVENT_KINDS: Mapping[str, Parser] = {
    "Pipeline Hook": parse_pipeline,
    "Job Hook": parse_job,
    "Push Hook": parse_push,
    "Tag Push Hook": parse_tag_push,
    "Merge Request Hook": parse_merge_request,
    "Deployment Hook": parse_deployment,
}

OBJECT_KINDS: Mapping[str, Parser] = {
    "pipeline": parse_pipeline,
    "build": parse_job,
    "push": parse_push,
    "tag_push": parse_tag_push,
    "merge_request": parse_merge_request,
    "deployment": parse_deployment,
}


def parse_event(event_header: str | None, body: Any) -> Event | None:
    """The typed event for one webhook delivery, or None for kinds the bot does not handle.

    The `X-Gitlab-Event` header picks the parser; without a known header (e.g. a
    "System Hook" delivery) the body's `object_kind` does.
    """
    if not isinstance(body, Mapping):
        raise MalformedEvent(f"body: expected an object, got {type_name(body)}")
    parser = EVENT_KINDS.get(event_header or "")
    if parser is None:
        kind = body.get("object_kind")
        parser = OBJECT_KINDS.get(kind) if isinstance(kind, str) else None
    return None if parser is None else parser(body)


def stage_progress(ev: PipelineEvent) -> tuple[int, int, str] | None:
    """(k, n, stage) for the furthest stage with a running or finished job, 1-based.

    None when the pipeline has no stages or no job has started yet.
    """
    return _progress(ev.stages, {b.stage for b in ev.builds if b.status in _STAGE_REACHED})


def _progress(stages: Sequence[str], reached: set[str]) -> tuple[int, int, str] | None:
    for index in range(len(stages) - 1, -1, -1):
        if stages[index] in reached:
            return index + 1, len(stages), stages[index]
    return None


def peek_pipeline(body: Any) -> tuple[str, str, tuple[int, int, str] | None] | None:
    """(`pipeline_state_key`, status, `stage_progress`) read straight from a Pipeline Hook
    body, as `parse_pipeline` would give them but without building the event (the event
    worker asks this of every queued delivery); None unless those fields are all there and
    well-typed (the typed parse then says what is wrong)."""
    try:
        attrs, project = body["object_attributes"], body["project"]
        pipeline_id, project_id = attrs["id"], project["id"]
        status, stages, builds = attrs["status"], attrs["stages"], body.get("builds") or []
        if not (_is_int(pipeline_id) and _is_int(project_id) and isinstance(status, str)):
            return None
        if not isinstance(stages, list) or not all(isinstance(x, str) for x in stages):
            return None
        if not isinstance(builds, list):
            return None
        reached = set()
        for build in builds:
            stage, state = build["stage"], build["status"]
            if not isinstance(stage, str) or not isinstance(state, str):
                return None
            if state in _STAGE_REACHED:
                reached.add(stage)
    except (KeyError, TypeError, AttributeError):
        return None
    return f"pipeline:{project_id}:{pipeline_id}", status, _progress(stages, reached)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def pipeline_state_key(ev: PipelineEvent) -> str:
    """The coalescing key: updates with the same key supersede each other in the outbox."""
    return f"pipeline:{ev.project_id}:{ev.pipeline_id}"
