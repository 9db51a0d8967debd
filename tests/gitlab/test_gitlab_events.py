"""Webhook bodies shaped like GitLab's documented payloads parse into the right typed events."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from bot.gitlab.events import (
    BuildInfo,
    DeploymentEvent,
    JobEvent,
    MalformedEvent,
    MergeRequestEvent,
    PipelineEvent,
    PushEvent,
    TagPushEvent,
    parse_event,
    peek_pipeline,
    pipeline_state_key,
    stage_progress,
)
from tests.support import FIXTURES as SUPPORT_FIXTURES

FIXTURES = SUPPORT_FIXTURES / "gitlab"
SHA = "322f874b1f5e3a6c9d0e2b7a8c4f6d1e0b9a7c35"
BUILDS_API = "repos/cloud/toolforge/builds-api"
DEPLOY_REPO = "repos/cloud/toolforge/toolforge-deploy"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def pipeline(name: str) -> PipelineEvent:
    ev = parse_event("Pipeline Hook", load(name))
    assert isinstance(ev, PipelineEvent)
    return ev


def test_pipeline_success_fields() -> None:
    ev = pipeline("pipeline_success")
    assert (ev.project_id, ev.project_path) == (1181, BUILDS_API)
    assert (ev.pipeline_id, ev.ref, ev.tag, ev.sha) == (731205, "main", False, SHA)
    assert ev.status == "success" and ev.is_final
    assert ev.stages == ("build", "test", "publish")
    assert ev.duration == 445
    assert (
        ev.url == "https://gitlab.wikimedia.org/repos/cloud/toolforge/builds-api/-/pipelines/731205"
    )
    assert ev.merge_request_iid is None
    assert ev.user == "raymond-ndibe"
    assert ev.commit_title == "builds: retry registry pushes on 502"
    assert BuildInfo(2934, "publish-chart", "publish", "success") in ev.builds
    assert ev.finished_at == "2024-02-22 21:33:30 UTC"


def test_pipeline_variants() -> None:
    failed = pipeline("pipeline_failed")
    assert failed.status == "failed" and failed.is_final
    tagged = pipeline("pipeline_tag_success")
    assert tagged.tag and tagged.ref == "0.0.131-20240222212602-322f874b"
    mr = pipeline("pipeline_mr")
    assert mr.merge_request_iid == 57 and mr.source == "merge_request_event"
    assert not mr.is_final
    created = pipeline("pipeline_created")
    assert created.status == "pending" and created.finished_at is None and created.duration is None


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("pipeline_created", None),
        ("pipeline_running_stage2", (2, 3, "test")),
        ("pipeline_success", (3, 3, "publish")),
        ("pipeline_failed", (2, 3, "test")),
        ("pipeline_mr", (1, 2, "build")),
    ],
)
def test_stage_progress(fixture: str, expected: tuple[int, int, str] | None) -> None:
    assert stage_progress(pipeline(fixture)) == expected


def test_state_key_is_shared_by_updates_of_one_pipeline() -> None:
    keys = {pipeline_state_key(pipeline(n)) for n in ("pipeline_created", "pipeline_success")}
    assert keys == {"pipeline:1181:731205"}
    assert pipeline_state_key(pipeline("pipeline_tag_success")) != keys.pop()


@pytest.mark.parametrize(
    "fixture",
    ["pipeline_created", "pipeline_running_stage2", "pipeline_success", "pipeline_failed",
     "pipeline_mr", "pipeline_tag_success", "pipeline_no_stages"],
)  # fmt: skip
def test_peek_reads_what_the_typed_parse_gives(fixture: str) -> None:
    """The event worker's cheap look at a queued pipeline delivery agrees with the typed
    event (it decides which queued updates are superseded)."""
    body = load(fixture)
    try:
        ev = pipeline(fixture)
    except MalformedEvent:
        return  # the typed parse refuses it; what peek says of it is never used alone
    assert peek_pipeline(body) == (pipeline_state_key(ev), ev.status, stage_progress(ev))


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b.pop("project"),
        lambda b: b["object_attributes"].update(id="731205"),
        lambda b: b["object_attributes"].update(status=None),
        lambda b: b["object_attributes"].update(stages="build"),
        lambda b: b["builds"][0].update(stage=3),
        lambda b: b.update(builds={"stage": "build"}),
    ],
)
def test_peek_gives_nothing_for_a_mistyped_pipeline(damage: Any) -> None:
    body = load("pipeline_running_stage2")
    damage(body)
    assert peek_pipeline(body) is None
    assert peek_pipeline([body]) is None


def test_job_event() -> None:
    ev = parse_event("Job Hook", load("job_success"))
    assert isinstance(ev, JobEvent)
    assert (ev.job_id, ev.name, ev.stage, ev.status) == (2931, "build-image", "build", "success")
    assert (ev.pipeline_id, ev.sha, ev.project_path) == (731205, SHA, BUILDS_API)
    assert ev.duration == pytest.approx(155.2)
    assert ev.url.endswith("/repos/cloud/toolforge/builds-api/-/jobs/2931")
    assert ev.allow_failure is False


def test_push_and_tag_push() -> None:
    push = parse_event("Push Hook", load("push_main"))
    assert isinstance(push, PushEvent)
    assert (push.branch, push.after, push.commits_count, push.user) == (
        "main",
        SHA,
        2,
        "raymond-ndibe",
    )
    tag = parse_event("Tag Push Hook", load("tag_push"))
    assert isinstance(tag, TagPushEvent)
    assert (tag.tag, tag.sha, tag.project_id) == ("0.0.131-20240222212602-322f874b", SHA, 1181)
    assert not tag.deleted


def test_deleted_tag_is_flagged() -> None:
    body = load("tag_push")
    body["after"], body["before"] = "0" * 40, SHA
    ev = parse_event("Tag Push Hook", body)
    assert isinstance(ev, TagPushEvent) and ev.deleted


@pytest.mark.parametrize(
    ("fixture", "action", "state"),
    [
        ("mr_opened", "open", "opened"),
        ("mr_updated", "update", "opened"),
        ("mr_merged", "merge", "merged"),
        ("mr_closed", "close", "closed"),
    ],
)
def test_merge_request_events(fixture: str, action: str, state: str) -> None:
    ev = parse_event("Merge Request Hook", load(fixture))
    assert isinstance(ev, MergeRequestEvent)
    assert (ev.project_path, ev.project_id, ev.iid) == (DEPLOY_REPO, 1187, 412)
    assert (ev.action, ev.state) == (action, state)
    assert (ev.source_branch, ev.target_branch) == ("bump_builds-api", "main")
    assert ev.url.endswith("/toolforge-deploy/-/merge_requests/412")
    assert ev.last_commit_sha is not None and ev.last_commit_sha.startswith("7c4e2a9f")
    assert (ev.merge_commit_sha is not None) == (state == "merged")


def test_mr_update_lists_changed_attributes() -> None:
    ev = parse_event("Merge Request Hook", load("mr_updated"))
    assert isinstance(ev, MergeRequestEvent)
    assert set(ev.changed) == {"title", "updated_at"}
    assert ev.user == "toolforge-deploybot"


def test_deployment_event() -> None:
    ev = parse_event("Deployment Hook", load("deployment"))
    assert isinstance(ev, DeploymentEvent)
    assert (ev.deployment_id, ev.status, ev.environment) == (15, "success", "toolsbeta")
    assert ev.sha is not None and ev.sha.startswith("e5f6a7b8")
    assert ev.project_path == DEPLOY_REPO


def test_object_kind_is_used_without_a_known_header() -> None:
    assert isinstance(parse_event(None, load("push_main")), PushEvent)
    assert isinstance(parse_event("System Hook", load("mr_merged")), MergeRequestEvent)


@pytest.mark.parametrize("header", ["Issue Hook", "Wiki Page Hook", "Note Hook", None])
def test_unknown_kinds_are_ignored(header: str | None) -> None:
    body = {"object_kind": "issue", "object_attributes": {"iid": 3}, "project": {"id": 1}}
    assert parse_event(header, body) is None


def test_missing_stages_names_the_field() -> None:
    with pytest.raises(MalformedEvent, match=r"^object_attributes\.stages: missing"):
        parse_event("Pipeline Hook", load("pipeline_no_stages"))


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda b: b["object_attributes"].__setitem__("id", "731205"), "object_attributes.id"),
        (lambda b: b["object_attributes"].__setitem__("tag", "false"), "object_attributes.tag"),
        (
            lambda b: b["object_attributes"].__setitem__("stages", "build"),
            "object_attributes.stages",
        ),
        (lambda b: b["object_attributes"].__setitem__("id", True), "object_attributes.id"),
        (lambda b: b["project"].pop("path_with_namespace"), "project.path_with_namespace"),
        (lambda b: b.__setitem__("project", []), "project"),
        (lambda b: b["builds"][1].__setitem__("stage", 2), r"builds\[1\]\.stage"),
        (lambda b: b["object_attributes"]["stages"].append(3), r"object_attributes\.stages\[3\]"),
        (lambda b: b.__setitem__("object_kind", "push"), "object_kind"),
    ],
)
def test_wrong_types_name_the_field(mutate: Any, path: str) -> None:
    body = load("pipeline_success")
    mutate(body)
    with pytest.raises(MalformedEvent, match=f"^{path}:"):
        parse_event("Pipeline Hook", body)


@pytest.mark.parametrize("body", [[], "x", None, 3])
def test_non_object_bodies_are_malformed(body: Any) -> None:
    with pytest.raises(MalformedEvent):
        parse_event("Pipeline Hook", body)


def test_mr_without_iid_is_malformed() -> None:
    body = load("mr_opened")
    del body["object_attributes"]["iid"]
    with pytest.raises(MalformedEvent, match=r"object_attributes\.iid"):
        parse_event("Merge Request Hook", body)


def test_extra_fields_are_tolerated() -> None:
    body = load("pipeline_success")
    extended = copy.deepcopy(body)
    extended["brand_new_top_level"] = {"x": [1, 2]}
    extended["object_attributes"]["protected_ref"] = True
    extended["builds"][0]["retries_count"] = 3
    assert parse_event("Pipeline Hook", extended) == parse_event("Pipeline Hook", body)


def test_optional_fields_may_be_absent() -> None:
    body = load("pipeline_success")
    for key in ("builds", "merge_request", "commit", "user"):
        body.pop(key)
    ev = parse_event("Pipeline Hook", body)
    assert isinstance(ev, PipelineEvent)
    assert ev.builds == () and ev.user is None and ev.commit_title is None
    assert stage_progress(ev) is None
