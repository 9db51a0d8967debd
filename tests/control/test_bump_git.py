"""`!deploy`/`!promote`/`!diff` on the plain git forge: real bare repos on disk, commits pushed
straight to the control repo's branch, one-line diffs, nothing written on bad input."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import App
from bot.config.model import Config
from bot.control.bumper import Bumper
from bot.core.git import git
from tests.support.bumpworld import Repos, git_config, make_repos, remote_file, remote_head
from tests.support.session import console_session
from tests.support.shown import shown

V127 = "0.0.127-20240215103245-a1b2c3d4"  # what the control repo pins (bumpworld)
V131 = "0.0.131-20240222212602-322f874b"

BUILDS_TOOLSBETA = "components/builds-api/values/toolsbeta.yaml"
BUILDS_TOOLS = "components/builds-api/values/tools.yaml"


@pytest.fixture
async def repos(tmp_path: Path) -> Repos:
    return await make_repos(tmp_path)


@pytest.fixture
def config(tmp_path: Path, repos: Repos) -> Config:
    return git_config(tmp_path, repos)


@pytest.fixture
async def app(config: Config) -> AsyncIterator[App]:
    """The real app with its store open (no chat, no HTTP): for driving services directly."""
    app = App(config)
    await app.store.open()
    yield app
    await app.store.close()


def bumper(app: App) -> Bumper:
    assert app.bumper is not None
    return app.bumper


async def changed_lines(bare: Path, rev: str = "main") -> dict[str, tuple[int, int]]:
    """path -> (added, deleted) lines of the commit `rev` against its parent."""
    out = await git("diff", "--numstat", f"{rev}~1", rev, cwd=bare)
    result = {}
    for line in out.splitlines():
        added, deleted, path = line.split("\t")
        result[path] = (int(added), int(deleted))
    return result


async def tree_listing(bare: Path, rev: str = "main") -> dict[str, str]:
    out = await git("ls-tree", "-r", rev, cwd=bare)
    return {line.split("\t")[1]: line.split()[2] for line in out.splitlines()}


async def test_deploy_latest_pins_the_start_of_the_path_with_one_line_per_pin(
    config: Config, repos: Repos
) -> None:
    """Without `to`, production (an environment that requires another) keeps its pin."""
    latest = repos.releases["builds-api"][-1][0]
    before = await tree_listing(repos.control)
    old_beta = await remote_file(repos.control, BUILDS_TOOLSBETA)
    lines = await console_session(config, ["!deploy builds-api latest T358908 T1"], "tester")
    reply = "\n".join(lines)
    assert f"{shown(V131)} -> {shown(latest)} in local, toolsbeta" in reply
    assert f"-> {shown(latest)} in tools" not in reply
    head = await remote_head(repos.control)
    assert f"pushed {head[:8]} to main" in reply
    assert await changed_lines(repos.control) == {
        "components/builds-api/values/local.yaml": (1, 1),
        BUILDS_TOOLSBETA: (1, 1),
    }
    after = await tree_listing(repos.control)
    assert {p for p in after if after[p] != before[p]} == {
        "components/builds-api/values/local.yaml", BUILDS_TOOLSBETA
    }  # fmt: skip
    new_beta = await remote_file(repos.control, BUILDS_TOOLSBETA)
    assert new_beta == old_beta.replace("0.0.131-20240222212602-322f874b", latest)
    message = await git("log", "-1", "--format=%B", "main", cwd=repos.control)
    assert message.strip("\n") == "\n".join(
        [
            f"builds-api: bump to {latest}",
            "",
            "From 0.0.131-20240222212602-322f874b",
            f"To {latest}",
            f"See file://{repos.components['builds-api'].with_suffix('')}/-/releases",
            "",
            "Bug: T358908",
            "Bug: T1",
        ]
    )


async def test_single_env_commit_message_and_status_shows_new_pin(
    config: Config, repos: Repos
) -> None:
    version, sha = repos.releases["builds-api"][-2]
    lines = await console_session(
        config, [f"!deploy builds-api {sha[:10]} to tools", "!status builds-api"], "tester"
    )
    assert any(f"-> {shown(version)} in tools" in line for line in lines), lines
    status = {line.split(":")[0]: line for line in lines if line.startswith("builds-api ")}
    assert status["builds-api tools"].startswith(f"builds-api tools: pinned {shown(version)} · ")
    assert status["builds-api toolsbeta"].startswith(
        f"builds-api toolsbeta: pinned {shown(V131)} · "
    )
    assert await changed_lines(repos.control) == {BUILDS_TOOLS: (1, 1)}
    message = await git("log", "-1", "--format=%B", "main", cwd=repos.control)
    assert message.splitlines()[:4] == [
        f"builds-api: bump to {version}",
        "",
        "From 0.0.127-20240215103245-a1b2c3d4",
        f"To {version}",
    ]
    assert "Bug:" not in message


async def test_gotmpl_and_nested_pins_keep_every_other_byte(app: App, repos: Repos) -> None:
    jobs_latest = repos.releases["jobs-api"][-1][0]
    log_latest = repos.releases["logging"][-1][0]
    tools_gotmpl = "components/jobs-api/values/tools.yaml.gotmpl"
    logging_tools = "components/logging/values/tools.yaml"
    old_jobs = await remote_file(repos.control, tools_gotmpl)
    old_logging = await remote_file(repos.control, logging_tools)
    await bumper(app).bump("jobs-api", jobs_latest, ["tools"], actor="console:tester")
    assert await changed_lines(repos.control) == {tools_gotmpl: (1, 1)}
    assert await remote_file(repos.control, tools_gotmpl) == old_jobs.replace(
        "0.0.409-20240212094501-5b7d2e90", jobs_latest
    )
    await bumper(app).bump("logging", log_latest, ["tools"], actor="console:tester")
    assert await changed_lines(repos.control) == {logging_tools: (2, 2)}
    new_logging = await remote_file(repos.control, logging_tools)
    expected = old_logging.replace('"0.0.23-20240201120000-0f1e2d3c"', f'"{log_latest}"').replace(
        "'0.0.8-20240205081530-9a8b7c6d'", f"'{log_latest}'"
    )
    assert new_logging == expected
    assert "# chartVersion: 0.0.20-20231201000000-deadbeef" in new_logging
    assert "chartVersion: not-a-pin" in new_logging


async def test_already_pinned_changes_nothing(config: Config, repos: Repos) -> None:
    head = await remote_head(repos.control)
    version = repos.releases["builds-api"][-1][0]
    lines = await console_session(
        config, [f"!deploy builds-api {version} to tools", f"!deploy builds-api {version} to tools"],
        "tester",
    )  # fmt: skip
    assert any(f"already at {shown(version)} in tools; nothing changed" in line for line in lines)
    log = await git("log", "--format=%H", f"{head}..main", cwd=repos.control)
    assert len(log.split()) == 1


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("!deploy bilds-api latest", r"unknown component 'bilds-api'; did you mean builds-api\?"),
        ("!deploy builds-api latest to tool", r"unknown environment 'tool'; did you mean tools\?"),
        ("!deploy builds-api 12345zz", r"unknown ref '12345zz'"),
        ("!deploy builds-api abcdef0", r"ambiguous commit abcdef0: matches 2 versions: .*abcdef02"),
        ("!deploy ../../etc/passwd latest", r"unknown component '../../etc/passwd'"),
        ("!deploy builds-api ../../x", r"must not contain '/' or '\.\.'"),
        ("!deploy builds-api latest to ../tools", r"unknown environment '../tools'"),
        ("!deploy brokenpin latest to tools", r"tools.yaml: pin key chartVersion not found"),
        ("!deploy builds-api latest to tools", r"refused: .*deployer"),
        ("!diff builds-api 0.0.999-20240101000000-aaaaaaaa", r"unknown version"),
    ],
)
async def test_bad_input_is_one_line_and_writes_nothing(
    tmp_path: Path, repos: Repos, line: str, expected: str
) -> None:
    # two tags whose sha8 start alike, on different commits: `abcdef0` is ambiguous
    work = tmp_path / "amb"
    await git("clone", "--quiet", str(repos.components["builds-api"]), str(work))
    for n, suffix in ((140, "abcdef01"), (141, "abcdef02")):
        await git("commit", "--quiet", "--allow-empty", "-m", f"c{n}", cwd=work)
        await git("tag", f"0.0.{n}-20240301000000-{suffix}", cwd=work)
    await git("push", "--quiet", "--tags", "origin", "HEAD:main", cwd=work)
    # a component whose pin file lacks the key
    broken = tmp_path / "brk"
    await git("clone", "--quiet", repos.control_url, str(broken))
    (broken / "components/brokenpin/values").mkdir(parents=True)
    (broken / "components/brokenpin/values/tools.yaml").write_text("image: x\nreplicas: 2\n")
    await git("add", "-A", cwd=broken)
    await git("commit", "--quiet", "-m", "brokenpin", cwd=broken)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=broken)
    config = git_config(tmp_path, repos)
    comps = dict(config.components)
    comps["brokenpin"] = comps["builds-api"]
    config = config.model_copy(update={"components": comps})
    head = await remote_head(repos.control)
    user = "betaonly" if "refused" in expected else "tester"
    lines = await console_session(config, [line], user)
    assert len(lines) == 1, lines
    assert re.search(expected, lines[0]), lines
    assert await remote_head(repos.control) == head
    assert (await git("branch", "--list", cwd=repos.control)).split() == ["*", "main"]


async def test_deployer_of_one_env_may_deploy_there_only(config: Config, repos: Repos) -> None:
    version = repos.releases["builds-api"][-1][0]
    lines = await console_session(config, ["!deploy builds-api latest"], "betaonly")
    assert lines and "refused" in lines[0] and "local" in lines[0]
    lines = await console_session(config, ["!deploy builds-api latest to toolsbeta"], "betaonly")
    assert any(f"-> {shown(version)} in toolsbeta" in line for line in lines), lines


async def test_push_race_is_retried_on_a_fresh_checkout(
    app: App, repos: Repos, tmp_path: Path
) -> None:
    # Someone else pushes first: the remote's pre-receive hook moves main (once) and rejects us.
    other = tmp_path / "other"
    await git("clone", "--quiet", repos.control_url, str(other))
    (other / "README.md").write_text("changed by a human\n")
    await git("commit", "--quiet", "-am", "docs", cwd=other)
    await git("push", "--quiet", "origin", "HEAD:refs/heads/racer", cwd=other)
    hook = repos.control / "hooks" / "pre-receive"
    hook.write_text(
        "#!/bin/sh\n"
        'if [ ! -e "$GIT_DIR/raced" ]; then\n'
        '  touch "$GIT_DIR/raced"\n'
        "  unset GIT_QUARANTINE_PATH\n"
        "  git update-ref refs/heads/main refs/heads/racer\n"
        "  echo 'main moved' >&2; exit 1\n"
        "fi\n"
    )
    hook.chmod(0o755)
    b = bumper(app)
    await b.plan("builds-api", "0", ["tools"])  # warm the checkout at the old main
    version = repos.releases["builds-api"][-1][0]
    outcome = await b.bump("builds-api", version, ["tools"], actor="console:tester")
    assert outcome.published is not None
    assert (repos.control / "raced").exists()
    assert await remote_file(repos.control, "README.md") == "changed by a human\n"
    assert f"chartVersion: {version}" in await remote_file(repos.control, BUILDS_TOOLS)
    parents = await git("log", "-1", "--format=%P", "main", cwd=repos.control)
    assert parents.strip() == await remote_head(repos.control, "racer")


async def test_concurrent_deploys_of_one_component_are_serialized(app: App, repos: Repos) -> None:
    head = await remote_head(repos.control)
    (v1, _), (v2, _) = repos.releases["builds-api"][-2:]
    b = bumper(app)
    await asyncio.gather(
        b.bump("builds-api", v1, ["tools"], actor="console:tester"),
        b.bump("builds-api", v2, ["toolsbeta"], actor="console:tester"),
        b.bump("jobs-api", repos.releases["jobs-api"][-1][0], ["tools"], actor="console:tester"),
    )
    log = (await git("log", "--format=%s", f"{head}..main", cwd=repos.control)).splitlines()
    assert len(log) == 3
    assert f"chartVersion: {v1}" in await remote_file(repos.control, BUILDS_TOOLS)
    assert f"chartVersion: {v2}" in await remote_file(repos.control, BUILDS_TOOLSBETA)
    entries = await app.services.sal.query(component="builds-api", limit=10)
    assert sorted((e.env, e.to_version, e.result) for e in entries) == [
        ("tools", v1, "pushed"), ("toolsbeta", v2, "pushed")
    ]  # fmt: skip


async def test_previous_comes_from_the_pin_history(
    config: Config, repos: Repos, tmp_path: Path
) -> None:
    work = tmp_path / "human"
    await git("clone", "--quiet", repos.control_url, str(work))
    values = work / BUILDS_TOOLS
    older, newer = repos.releases["builds-api"][0][0], repos.releases["builds-api"][1][0]
    for version in (older, newer):
        text = values.read_text()
        values.write_text(re.sub(r"chartVersion: \S+", f"chartVersion: {version}", text))
        await git("commit", "--quiet", "-am", f"bump to {version}", cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    lines = await console_session(
        config, ["!deploy builds-api previous to tools", "!deploy builds-api previous to tools"],
        "tester",
    )  # fmt: skip
    assert any(f"{shown(newer)} -> {shown(older)} in tools" in line for line in lines), lines
    # now the store knows the bot's own bump: previous of `older` is `newer` again
    assert any(f"{shown(older)} -> {shown(newer)} in tools" in line for line in lines), lines
    lines = await console_session(config, ["!deploy jobs-api previous to tools"], "tester")
    assert lines == ["deploy: no previous version known for this component and environment"]


async def test_promote_pins_the_required_environment_version(config: Config, repos: Repos) -> None:
    lines = await console_session(config, ["!promote builds-api T5"], "tester")
    assert any(f"{shown(V127)} -> {shown(V131)} in tools" in line for line in lines), lines
    assert await changed_lines(repos.control) == {BUILDS_TOOLS: (1, 1)}
    assert "Bug: T5" in await git("log", "-1", "--format=%B", cwd=repos.control)


async def test_diff_summarises_and_serves_the_full_diff(app: App, repos: Repos) -> None:
    head = await remote_head(repos.control)
    latest = repos.releases["builds-api"][-1][0]
    lines = await console_session(app.config, ["!diff builds-api latest tools"], "tester")
    assert lines[0] == (f"builds-api: would change 1 file: tools: {shown(V127)} -> {shown(latest)}")
    url = lines[1].removeprefix("full diff: ")
    assert url.startswith("http://127.0.0.1:9/diffs/")
    async with TestClient(TestServer(app.http_app())) as client:
        resp = await client.get(url.removeprefix("http://127.0.0.1:9"))
        text = await resp.text()
        assert resp.status == 200
        assert text.splitlines()[:2] == [f"--- a/{BUILDS_TOOLS}", f"+++ b/{BUILDS_TOOLS}"]
        assert "-chartVersion: 0.0.127-20240215103245-a1b2c3d4" in text
        assert f"+chartVersion: {latest}" in text
        assert (await client.get("/diffs/..%2f..%2fetc")).status == 404
    assert await remote_head(repos.control) == head


async def test_dev_build_of_an_mr_resolves_from_its_pipeline(app: App, repos: Repos) -> None:
    await app.store.execute(
        "INSERT INTO pipelines (project, pipeline_id, component, ref, sha, status, version,"
        " updated_at) VALUES (?,?,?,?,?,?,?,?)",
        ("builds-api", 9, "builds-api", "refs/merge-requests/12/head", "f" * 40, "success",
         "0.0.136-dev-mr-12", 1.0),
    )  # fmt: skip
    lines = await console_session(
        app.config, ["!diff builds-api mr12 tools", "!diff builds-api mr13"]
    )
    assert lines[0].endswith(f"tools: {shown(V127)} -> 0.0.136-dev-mr-12")  # a dev build: in full
    assert lines[2] == "diff: no dev build known for MR !13"


async def test_a_lock_blocks_deploys_by_others(app: App, repos: Repos) -> None:
    head = await remote_head(repos.control)
    await app.services.locks.add("builds-api", "tools", "console:alice", "incident T9")
    lines = await console_session(app.config, ["!deploy builds-api latest to tools"], "tester")
    assert len(lines) == 1 and "builds-api locked in tools by console:alice" in lines[0], lines
    assert lines[0].endswith("incident T9; nothing changed")
    assert await remote_head(repos.control) == head
