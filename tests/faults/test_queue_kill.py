"""kill -9 with two commands in the deploy queue, then a restart on the same state: both are
still queued, and each runs exactly once after the restart (the real `deploybot run` on a
real IRC server, ngircd, the recording helmfile, FakeKube; the kill-matrix bed of
tests/support/killmatrix.py). IRC rather than the console: a console session runs its lines
one after the other, so it could never queue behind its own running deploy."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest
import yaml

from tests.support.crashbed import start_bot, until
from tests.support.fakes.kube import FakeKube
from tests.support.ircservers import Ngircd, RawIrcClient, ngircd_fixture, unique  # noqa: F401
from tests.support.killmatrix import Point, Trial, prepare_template

pytestmark = pytest.mark.faults
WITHIN = 60.0


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return asyncio.run(prepare_template(tmp_path_factory.mktemp("queuekill")))


def on_irc(trial: Trial, ngircd: Ngircd, nick: str, channel: str) -> None:  # noqa: F811
    data = yaml.safe_load(trial.config.read_text())
    data["bot"]["nick"] = nick
    data["chat"] = {
        "default_room": channel,
        "irc": {"host": "127.0.0.1", "port": ngircd.port, "tls": False, "channels": [channel]},
    }
    data["components"]["builds-api"]["room"] = channel
    data["auth"] = {
        "rules": [
            {"who": ["irc-host:alice*", "irc-host:bob*"], "role": "admin", "trust": "hostmask"}
        ]
    }
    trial.config.write_text(yaml.safe_dump(data))


async def joined(client: RawIrcClient, nick: str, since: int) -> None:
    await client.wait_for(lambda ln: ln.command == "JOIN" and ln.nick == nick, 30, since)


async def test_two_queued_commands_survive_kill_9_and_each_runs_once(
    template: Path,
    tmp_path: Path,
    ngircd: Ngircd,  # noqa: F811
) -> None:
    point = Point("apply: helmfile sync runs", "apply", "running", hold="helmfile apply")
    root = tmp_path / "trial"
    root.mkdir()
    async with FakeKube() as kube:
        trial = Trial(root, template, point, kube)
        command = await trial.setup()
        nick, channel = unique("killq"), unique("#killq")
        on_irc(trial, ngircd, nick, channel)
        alice = RawIrcClient(ngircd.port, unique("alice"))
        bob = RawIrcClient(ngircd.port, unique("bob"))  # a user's own commands run in order
        for client in (alice, bob):
            await client.connect()
            await client.join(channel)
        driver = asyncio.create_task(trial.drive())
        first = second = None
        try:
            first = await start_bot(trial.config, trial.out1, trial.env, own_group=True)
            await joined(alice, nick, 0)
            await alice.privmsg(channel, command)
            await until(trial.reached, "the first apply's sync", WITHIN)
            for task in ("T1", "T2"):
                # --force: the held sync already put the pin live, so a plain !apply would
                # truthfully say "nothing to apply"; bob (an admin) re-applies on purpose
                await bob.privmsg(channel, f"!apply builds-api toolsbeta --force --queue {task}")
            queued = "SELECT id, state FROM deploy_queue ORDER BY id"
            await until(lambda: len(trial.query(queued)) == 2, "two queued entries", WITHIN)
            first.kill()
            await first.wait()
            trial.released = True  # the held sync died with the bot
            assert trial.query(queued) == [(1, "queued"), (2, "queued")]
            syncs_at_kill = trial.syncs()

            mark = len(alice.lines)
            second = await start_bot(trial.config, trial.out2, trial.env, own_group=True)
            await joined(alice, nick, mark)
            await until(lambda: trial.query(queued) == [(1, "done"), (2, "done")],
                        "both entries to run after the restart", WITHIN)  # fmt: skip
            deploys = trial.query("SELECT id, state, tasks FROM deploys ORDER BY id")
            assert [d[1] for d in deploys] == ["interrupted", "done", "done"]
            assert [d[2] for d in deploys[1:]] == ["T1", "T2"]  # each entry once, in order
            interrupted = [t for _, t in trial.query("SELECT id, text FROM outbox") if
                           t.startswith("deploy #1 ") and " interrupted: " in t]  # fmt: skip
            # its advice is the planner's: the pin went live before the kill, so no "!apply"
            assert interrupted and "; nothing to apply: toolsbeta already runs" in interrupted[0]
            assert trial.syncs() == syncs_at_kill + 2
            assert not [r for r in trial.records() if r.get("overlap")]
            started = trial.query(
                "SELECT COUNT(*) FROM sal WHERE action='queue' AND result='started'"
            )
            assert started == [(2,)]
        finally:
            driver.cancel()
            await alice.close()
            await bob.close()
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                if proc is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, signal.SIGKILL)
