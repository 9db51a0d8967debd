"""GitLabAPI drives the real python-gitlab against an HTTP fake of the v4 API."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator

import pytest

from bot.core.errors import GitLabError
from bot.gitlab.api import GitLabAPI
from tests.support.fakes.gitlab import FakeGitLab

TOKEN = "glpat-s3cret-t0ken-value"
DEPLOY = "repos/cloud/toolforge/toolforge-deploy"
BUILDS = "repos/cloud/toolforge/builds-api"
VALUES = "components/builds-api/values/tools.yaml"
OLD_PIN = "chartVersion: 0.0.130-20240220101500-8e1d2c3a\nchartRepository: tools\n"
NEW_PIN = "chartVersion: 0.0.131-20240222212602-322f874b\nchartRepository: tools\n"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGitLab]:
    async with FakeGitLab(token=TOKEN) as gl:
        gl.add_project(DEPLOY, files={VALUES: OLD_PIN, "deploy.sh": "#!/bin/sh\n"})
        gl.add_project(BUILDS)
        yield gl


@pytest.fixture
async def api(fake: FakeGitLab) -> AsyncIterator[GitLabAPI]:
    client = GitLabAPI(fake.url, TOKEN, timeout=5.0, retries=3, backoff=0.01, per_page=20)
    yield client
    client.close()


def count(fake: FakeGitLab, method: str, fragment: str) -> int:
    return sum(1 for r in fake.requests if r.method == method and fragment in r.path)


async def test_list_tags_follows_pagination(fake: FakeGitLab, api: GitLabAPI) -> None:
    expected = {}
    for n in range(45):
        sha = fake.add_commit(BUILDS, "main", {"VERSION": f"{n}\n"}, f"release {n}")
        name = f"0.0.{n}-20240222212602-{sha[:8]}"
        fake.add_tag(BUILDS, name, sha)
        expected[name] = sha
    tags = await api.list_tags(BUILDS)
    assert {t.name: t.commit for t in tags} == expected
    assert [t.name for t in tags] == list(reversed(expected)), "newest first"
    assert all(t.created_at for t in tags)
    pages = [r.query.get("page", "1") for r in fake.requests if r.path.endswith("/tags")]
    assert pages == ["1", "2", "3"]


async def test_project_may_be_given_by_id(fake: FakeGitLab, api: GitLabAPI) -> None:
    project_id = fake.add_project("repos/cloud/toolforge/jobs-api", files={"a.txt": "A\n"})
    assert await api.get_file(project_id, "a.txt", "main") == "A\n"


async def test_rate_limit_waits_for_retry_after(fake: FakeGitLab, api: GitLabAPI) -> None:
    fake.fail_next("GET", f"/projects/{BUILDS}/repository/tags", 429, {"Retry-After": "1"})
    started = time.monotonic()
    assert await api.list_tags(BUILDS) == []
    assert time.monotonic() - started >= 0.9
    assert count(fake, "GET", "/repository/tags") == 2


async def test_retry_after_is_capped(fake: FakeGitLab) -> None:
    client = GitLabAPI(fake.url, TOKEN, retries=2, backoff=0.01, max_retry_after=0.05)
    fake.fail_next("GET", "/projects/", 429, {"Retry-After": "3600"})
    started = time.monotonic()
    try:
        assert await client.get_file(DEPLOY, VALUES, "main") == OLD_PIN
    finally:
        client.close()
    assert time.monotonic() - started < 30


async def test_persistent_502_gives_one_line_error_without_token(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    fake.fail_next("GET", "/projects/", 502, times=50)
    with pytest.raises(GitLabError) as caught:
        await api.get_branch(DEPLOY, "main")
    message = str(caught.value)
    assert caught.value.status == 502
    assert "4 attempts" in message and "502" in message
    assert TOKEN not in message and "\n" not in message
    assert count(fake, "GET", "/repository/branches/main") == 4


async def test_while_gitlab_is_failing_calls_are_tried_once_until_it_answers(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    """Three `!where`s during a GitLab outage must not each wait out the whole backoff: after
    one call failed all its retries, the next ones try once, until GitLab answers again."""
    fake.fail_next("GET", "/projects/", 502, times=50)
    with pytest.raises(GitLabError, match="4 attempts"):
        await api.get_branch(DEPLOY, "main")
    with pytest.raises(GitLabError, match="502.*GitLab is failing; not retried"):
        await api.list_tags(BUILDS)
    assert count(fake, "GET", "/repository/tags") == 1

    fake.clear_faults()
    assert await api.list_tags(BUILDS) == []
    fake.fail_next("GET", "/projects/", 502, times=2)  # a blip after the recovery is retried
    assert await api.list_tags(BUILDS) == []
    assert count(fake, "GET", "/repository/tags") == 2 + 3


async def test_wrong_token_is_a_clear_error_and_not_retried(fake: FakeGitLab) -> None:
    client = GitLabAPI(fake.url, "glpat-wrong-token", retries=3, backoff=0.01)
    try:
        with pytest.raises(GitLabError) as caught:
            await client.list_tags(BUILDS)
    finally:
        client.close()
    assert caught.value.status == 401
    assert "rejected the API token" in str(caught.value)
    assert "glpat-wrong-token" not in str(caught.value)
    assert len(fake.requests) == 1


async def test_unreachable_gitlab_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = GitLabAPI(f"http://127.0.0.1:{port}", TOKEN, timeout=2.0, retries=2, backoff=0.01)
    try:
        with pytest.raises(GitLabError, match="failed after 3 attempts: cannot reach") as caught:
            await client.get_mr(DEPLOY, 1)
    finally:
        client.close()
    assert TOKEN not in str(caught.value)


async def test_commit_with_actions_then_read_back(fake: FakeGitLab, api: GitLabAPI) -> None:
    main_head = fake.branch_head(DEPLOY, "main")
    commit = await api.create_commit(
        DEPLOY,
        "bump_builds-api",
        "builds-api: bump to 0.0.131-20240222212602-322f874b",
        [{"action": "update", "file_path": VALUES, "content": NEW_PIN}],
        start_branch="main",
    )
    assert commit["parent_ids"] == [main_head]
    assert await api.get_file(DEPLOY, VALUES, "bump_builds-api") == NEW_PIN
    assert await api.get_file(DEPLOY, VALUES, "main") == OLD_PIN
    assert await api.get_file(DEPLOY, VALUES, commit["short_id"]) == NEW_PIN
    branch = await api.get_branch(DEPLOY, "bump_builds-api")
    assert branch is not None and branch["commit"]["id"] == commit["id"]
    assert await api.get_file(DEPLOY, "components/nope.yaml", "main") is None
    assert await api.get_branch(DEPLOY, "no-such-branch") is None


async def test_rejected_commit_reports_gitlab_reason(fake: FakeGitLab, api: GitLabAPI) -> None:
    with pytest.raises(GitLabError, match="A file with this name doesn't exist") as caught:
        await api.create_commit(
            DEPLOY,
            "bump_builds-api",
            "bump",
            [{"action": "update", "file_path": "components/missing.yaml", "content": "x"}],
            start_branch="main",
        )
    assert caught.value.status == 400
    assert await api.get_branch(DEPLOY, "bump_builds-api") is None
    assert count(fake, "POST", "/repository/commits") == 1


async def test_force_resets_an_existing_branch(fake: FakeGitLab, api: GitLabAPI) -> None:
    fake.add_commit(DEPLOY, "bump_builds-api", {VALUES: "stale\n"}, "old bump")
    action = [{"action": "update", "file_path": VALUES, "content": NEW_PIN}]
    with pytest.raises(GitLabError, match="already exists"):
        await api.create_commit(DEPLOY, "bump_builds-api", "bump", action, start_branch="main")
    commit = await api.create_commit(
        DEPLOY, "bump_builds-api", "bump", action, start_branch="main", force=True
    )
    assert commit["parent_ids"] == [fake.branch_head(DEPLOY, "main")]
    assert fake.file(DEPLOY, "bump_builds-api", VALUES) == NEW_PIN


async def test_merge_request_lifecycle(fake: FakeGitLab, api: GitLabAPI) -> None:
    assert await api.find_open_mr(DEPLOY, "bump_builds-api") is None
    await api.create_commit(
        DEPLOY,
        "bump_builds-api",
        "bump",
        [{"action": "update", "file_path": VALUES, "content": NEW_PIN}],
        start_branch="main",
    )
    mr = await api.create_mr(DEPLOY, "bump_builds-api", "main", "builds-api: bump", "T358229")
    assert (mr["state"], mr["source_branch"], mr["target_branch"]) == (
        "opened",
        "bump_builds-api",
        "main",
    )
    found = await api.find_open_mr(DEPLOY, "bump_builds-api")
    assert found is not None and found["iid"] == mr["iid"]
    with pytest.raises(GitLabError, match="Another open merge request") as dup:
        await api.create_mr(DEPLOY, "bump_builds-api", "main", "again", "")
    assert dup.value.status == 409

    updated = await api.update_mr(DEPLOY, mr["iid"], title="builds-api: bump to 0.0.131")
    assert updated["title"] == "builds-api: bump to 0.0.131"
    fetched = await api.get_mr(DEPLOY, mr["iid"])
    assert fetched is not None and fetched["title"] == "builds-api: bump to 0.0.131"
    assert fetched["description"] == "T358229"

    note = await api.post_mr_note(DEPLOY, mr["iid"], "deployed to toolsbeta")
    assert note["body"] == "deployed to toolsbeta"
    assert [n["body"] for n in fake.notes(DEPLOY, mr["iid"])] == ["deployed to toolsbeta"]

    merged = await api.merge_mr(DEPLOY, mr["iid"])
    assert merged["state"] == "merged" and merged["merge_commit_sha"]
    assert await api.get_file(DEPLOY, VALUES, "main") == NEW_PIN
    assert await api.find_open_mr(DEPLOY, "bump_builds-api") is None
    with pytest.raises(GitLabError):
        await api.merge_mr(DEPLOY, mr["iid"])
    assert await api.delete_branch(DEPLOY, "bump_builds-api") is True
    assert await api.delete_branch(DEPLOY, "bump_builds-api") is False
    assert await api.get_mr(DEPLOY, 999) is None


async def test_commit_merge_requests_finds_the_introducing_mr(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    sha = fake.add_commit(BUILDS, "retry-push", {"registry.py": "retry = 3\n"}, "retry pushes")
    fake.add_commit(BUILDS, "other", {"x.py": "x\n"}, "unrelated")
    mr = fake.add_merge_request(BUILDS, "retry-push", "main", "builds: retry registry pushes")
    fake.add_merge_request(BUILDS, "other", "main", "unrelated change")
    found = await api.commit_merge_requests(BUILDS, sha[:8])
    assert [m["iid"] for m in found] == [mr["iid"]]
    assert found[0]["web_url"].endswith(f"/-/merge_requests/{mr['iid']}")


async def test_pipelines_and_job_trace(fake: FakeGitLab, api: GitLabAPI) -> None:
    head = fake.branch_head(BUILDS, "main")
    assert head is not None
    first = fake.add_pipeline(BUILDS, head, "main", status="failed")
    second = fake.add_pipeline(BUILDS, head, "main", status="success")
    fake.add_pipeline(BUILDS, "f" * 40, "other")
    pipelines = await api.list_pipelines(BUILDS, sha=head)
    assert [p["id"] for p in pipelines] == [second["id"], first["id"]]
    assert {p["ref"] for p in await api.list_pipelines(BUILDS, ref="other")} == {"other"}
    fake.set_job_trace(BUILDS, 2931, "$ make image\nbuilt builds-api:0.0.131\n")
    assert "built builds-api:0.0.131" in await api.job_trace(BUILDS, 2931)
    with pytest.raises(GitLabError) as caught:
        await api.job_trace(BUILDS, 4040)
    assert caught.value.status == 404


async def test_writes_are_not_repeated_after_a_5xx(fake: FakeGitLab, api: GitLabAPI) -> None:
    fake.add_commit(DEPLOY, "bump_builds-api", {VALUES: NEW_PIN}, "bump")
    fake.fail_next("POST", f"/projects/{DEPLOY}/merge_requests", 502)
    with pytest.raises(GitLabError, match="502"):
        await api.create_mr(DEPLOY, "bump_builds-api", "main", "bump", "")
    assert count(fake, "POST", "/merge_requests") == 1


async def test_writes_are_retried_after_429(fake: FakeGitLab, api: GitLabAPI) -> None:
    fake.add_commit(DEPLOY, "bump_builds-api", {VALUES: NEW_PIN}, "bump")
    fake.fail_next("POST", f"/projects/{DEPLOY}/merge_requests", 429, {"Retry-After": "0"})
    mr = await api.create_mr(DEPLOY, "bump_builds-api", "main", "bump", "")
    assert count(fake, "POST", "/merge_requests") == 2
    assert [m["iid"] for m in fake.merge_requests(DEPLOY)] == [mr["iid"]]
