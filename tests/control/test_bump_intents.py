"""After a restart, on the plain git forge: a bump whose push has not landed is kept while
the push a crash cut off may still land, then dropped with a line; a pushed pin change whose
auto-apply never started is said once, naming `!apply`. (The kill -9 matrix in
tests/faults/test_kill_matrix.py reaches these through a real crash.)"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bot.app import App
from bot.config.model import Config
from bot.control.forge import GitControl
from bot.control.intents import Intent, Intents
from bot.control.recovery import IN_FLIGHT_EVERY, Recovery
from tests.support.bumpworld import Repos, git_config, make_repos, remote_file
from tests.support.session import console_session
from tests.support.shown import shown

BETA = "components/builds-api/values/toolsbeta.yaml"
ENVS = [
    {"name": "toolsbeta", "sal_project": "toolsbeta", "auto_apply": True},
    {"name": "tools", "sal_project": "tools", "requires": "toolsbeta"},
]


@pytest.fixture
async def repos(tmp_path: Path) -> Repos:
    return await make_repos(tmp_path)


@pytest.fixture
def config(tmp_path: Path, repos: Repos) -> Config:
    return git_config(tmp_path, repos, environments=ENVS)


async def test_an_unpushed_intent_waits_for_a_late_push_then_is_dropped_with_a_line(
    config: Config, repos: Repos
) -> None:
    version = repos.releases["builds-api"][-1][0]
    sha = "0123456789abcdef0123456789abcdef01234567"  # never reaches the remote
    intents = Intents(config.bot.state_dir / "intents")
    intents.write(Intent(sha, "builds-api", version, {"toolsbeta": "0.0.1"}, "console:tester",
                         ["T9"], "bump"))  # fmt: skip
    said: list[str] = []

    async def announce(component: str, line: str) -> None:
        said.append(f"{component}: {line}")

    app = App(config)
    await app.store.open()
    try:
        assert app.bumper is not None
        recovery = Recovery(app.bumper, announce, every=30)
        assert await recovery.once() == IN_FLIGHT_EVERY  # its push may still land
        assert said == [] and [i.sha for i in intents.pending()] == [sha]

        old = time.time() - GitControl.in_flight - 1
        os.utime(config.bot.state_dir / "intents" / f"{sha}.json", (old, old))
        assert await recovery.once() == 0
        assert said == [
            f"builds-api: builds-api {version} (01234567, toolsbeta) never reached main before"
            " the bot restarted; nothing changed — !status builds-api to check, then try again"
        ]
        assert await app.services.sal.query(component="builds-api") == []
        assert intents.pending() == []
    finally:
        await app.store.close()


async def test_a_pushed_pin_whose_auto_apply_never_started_is_said_once(
    config: Config, repos: Repos
) -> None:
    version = repos.releases["builds-api"][-1][0]
    app = App(config)  # the bump alone, as a crash before the auto-apply leaves it
    await app.store.open()
    try:
        assert app.bumper is not None
        out = await app.bumper.bump("builds-api", version, ["toolsbeta"], actor="console:tester",
                                    tasks=["T9"])  # fmt: skip
    finally:
        await app.store.close()
    assert out.published is not None
    sha = out.published.commit_sha
    assert version in await remote_file(repos.control, BETA)

    first = await console_session(config, ["!sal builds-api toolsbeta 2"])
    assert (
        f"[#deploybot] builds-api {shown(version)} was pinned in toolsbeta ({sha[:8]}) but the bot"
        " restarted before the auto-apply started; nothing was applied there —"
        " !apply builds-api toolsbeta to deploy it"
    ) in first
    sal = [line for line in first if line.startswith("#")]
    assert "[auto-apply builds-api toolsbeta]" in sal[0] and "interrupted" in sal[0]
    assert "[bump builds-api toolsbeta]" in sal[1]
    again = await console_session(config, ["!sal builds-api toolsbeta 2"])
    assert not any("was pinned in" in line for line in again)  # said once
