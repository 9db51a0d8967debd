"""`!where <component> <ref>`: step k of n from the component repo, the store and the control
repo, on the plain git forge (real repos) and the GitLab forge (FakeGitLab)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.config.model import Config
from bot.core.git import git
from bot.store.db import store_from_config
from tests.support.bumpworld import Repos, base_config, git_config, make_repos
from tests.support.fakes.gitlab import FakeGitLab
from tests.support.session import console_session
from tests.support.shown import shown

V131 = "0.0.131-20240222212602-322f874b"  # what the control repo pins (bumpworld)
V127 = "0.0.127-20240215103245-a1b2c3d4"


@pytest.fixture
async def repos(tmp_path: Path) -> Repos:
    return await make_repos(tmp_path)


@pytest.fixture
def config(tmp_path: Path, repos: Repos) -> Config:
    return git_config(tmp_path, repos)


async def push_commit(repos: Repos, tmp_path: Path, branch: str = "main") -> str:
    work = tmp_path / f"dev-{branch}"
    await git("clone", "--quiet", str(repos.components["builds-api"]), str(work))
    await git("commit", "--quiet", "--allow-empty", "-m", "a change", cwd=work)
    await git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    return (await git("rev-parse", "HEAD", cwd=work)).strip()


async def test_release_not_yet_pinned_is_step_two(config: Config, repos: Repos) -> None:
    latest = repos.releases["builds-api"][-1][0]
    lines = await console_session(config, ["!where builds-api latest"], "nobody")
    assert lines[0] == (
        f"builds-api {shown(latest)}: step 2 of 6 (built image+chart); next: bump committed"
    )
    assert lines[1] == (
        f"pinned now: local {shown(V131)} · toolsbeta {shown(V131)} · tools {shown(V127)}"
        f" · local does not run it yet; next: !deploy builds-api {latest} to local"
    )


async def test_after_deploy_to_first_envs_the_step_advances(config: Config, repos: Repos) -> None:
    version, sha = repos.releases["builds-api"][-1]
    lines = await console_session(
        config, [f"!deploy builds-api {sha[:8]} to local", f"!where builds-api {sha[:8]}"],
        "tester",
    )  # fmt: skip
    assert (
        f"builds-api {shown(version)}: step 4 of 6 (pinned in local); next: pinned in toolsbeta"
        in lines
    )


async def test_merged_commit_without_a_release_is_step_one(
    config: Config, repos: Repos, tmp_path: Path
) -> None:
    sha = await push_commit(repos, tmp_path)
    lines = await console_session(config, [f"!where builds-api {sha[:9]}"], "nobody")
    assert lines[0] == f"builds-api {sha}: step 1 of 6 (merged); next: built image+chart"


async def test_pipeline_in_the_store_counts_as_built(
    config: Config, repos: Repos, tmp_path: Path
) -> None:
    sha = await push_commit(repos, tmp_path)
    store = store_from_config(config)
    await store.open()
    url = "https://gitlab.example.org/repos/cloud/toolforge/builds-api/-/pipelines/77"
    await store.execute(
        "INSERT INTO pipelines (project, pipeline_id, component, ref, sha, status, url,"
        " updated_at) VALUES (?,?,?,?,?,?,?,?)",
        ("repos/cloud/toolforge/builds-api", 77, "builds-api", "main", sha, "success", url,
         time.time()),
    )  # fmt: skip
    await store.close()
    lines = await console_session(config, [f"!where builds-api {sha[:8]}"], "nobody")
    assert lines[0].startswith(f"builds-api {sha}: step 2 of 6 (built image+chart)")
    assert f"built image+chart {url}" in lines[2]


async def test_commit_on_a_side_branch_is_not_merged(
    config: Config, repos: Repos, tmp_path: Path
) -> None:
    sha = await push_commit(repos, tmp_path, branch="feature")
    lines = await console_session(config, [f"!where builds-api {sha[:8]}"], "nobody")
    assert lines[0] == f"builds-api {sha[:8]}: not on main (yet) · step 0 of 6; next: merged"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("!where builds-api", "where: usage: !where <component> <ref> [to <env>]"),
        (
            "!where bulds-api latest",
            "where: unknown component 'bulds-api'; did you mean builds-api?",
        ),
        ("!where builds-api ../../etc", "where: ref '../../etc' must not contain '/' or '..'"),
        ("!where builds-api xyz1234", "where: unknown ref 'xyz1234'"),
    ],
)
async def test_bad_input(config: Config, line: str, expected: str) -> None:
    lines = await console_session(config, [line], "nobody")
    assert len(lines) == 1 and lines[0].startswith(expected), lines


async def test_gitlab_forge_open_bump_mr_is_step_three(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "glpat-where-t0ken"
    control, builds = "ops/toolforge-deploy", "ops/builds-api"
    async with FakeGitLab(token=token) as fake:
        fake.add_project(
            control,
            files={
                f"components/builds-api/values/{env}.yaml": "chartVersion: 0.0.1-20240101000000-aaaaaaaa\n"
                for env in ("local", "toolsbeta", "tools")
            },
        )
        fake.add_project(builds)
        sha = fake.add_commit(builds, "main", {"x": "1\n"}, "change")
        version = f"0.0.2-20240102000000-{sha[:8]}"
        fake.add_tag(builds, version, sha)
        monkeypatch.setenv("DEPLOYBOT_WHERE_TOKEN", token)
        config = base_config(
            tmp_path,
            {"forge": "gitlab", "project": control},
            {"builds-api": {"project": builds}},
            gitlab={"url": fake.url, "token_env": "DEPLOYBOT_WHERE_TOKEN"},
        )
        lines = await console_session(
            config, ["!where builds-api latest", "!deploy builds-api latest to toolsbeta",
                     "!where builds-api latest"], "tester",
        )  # fmt: skip
    mr = f"https://gitlab.example.org/{control}/-/merge_requests/1"
    said = shown(version)
    assert lines[0] == f"builds-api {said}: step 2 of 6 (built image+chart); next: bump MR open"
    i = next(n for n, line in enumerate(lines) if line.startswith(f"builds-api {said}: step 3"))
    assert lines[i] == f"builds-api {said}: step 3 of 6 (bump MR open); next: pinned in local"
    assert f"bump MR open {mr}" in lines[i + 2]
    assert f"merged https://gitlab.example.org/{builds}/-/commit/{sha}" in lines[i + 2]


async def test_where_previous_takes_the_environment_its_refusal_asks_for(
    demo_config: Config,
) -> None:
    # `!where builds-api previous` answers that previous differs per environment and says
    # "add to <env>"; typed so, `!where builds-api previous to toolsbeta` was a usage error
    lines = await console_session(
        demo_config, ["!where builds-api previous", "!where builds-api previous to toolsbeta"]
    )
    lines = [x for x in lines if not x.startswith("[#")]
    assert lines[0].startswith("where: previous differs per environment (toolsbeta: 0.0.132 (")
    assert lines[0].endswith("; add to <env>")
    assert lines[1].startswith("builds-api 0.0.132 ("), lines  # toolsbeta's previous: what runs
