"""No head-of-line blocking in chat: while alice's deploy runs, bob's reads answer.

The deploy's `helmfile sync` (the recording fake) blocks until the test lets it finish, so
"while the deploy runs" is a fact the test controls, not a timing. On a real IRC server
(ngircd), with the real App and its IRC adapter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.app import App
from tests.support.deployworld import NS, DeployBed, bed  # noqa: F401  (fixture)
from tests.support.ircservers import Ngircd, RawIrcClient, ngircd_fixture, unique  # noqa: F401
from tests.support.poll import until

pytestmark = pytest.mark.faults


async def said(client: RawIrcClient, bot: str, channel: str, pattern: str, since: int) -> str:
    line = await client.wait_for(
        lambda ln: (
            ln.command == "PRIVMSG"
            and (ln.nick or "").lower() == bot.lower()
            and ln.param(0).lower() == channel.lower()
            # a channel reply starts with the asker's nick (`bob: you are ...`)
            and re.search(pattern, re.sub(r"^[^\s:]+: ", "", ln.param(1), count=1)) is not None
        ),
        20,
        since,
    )
    return line.param(1)


async def test_reads_answer_while_another_users_deploy_is_running(
    bed: DeployBed,  # noqa: F811
    ngircd: Ngircd,
    tmp_path: Path,
) -> None:
    old, new = bed.releases[-3], bed.pins["toolsbeta"]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.script({"helmfile apply": {"ack": True}})  # sync waits for the test's go
    nick, channel = unique("holbot"), unique("#hol")
    bed.data["bot"]["nick"] = nick
    bed.data["chat"] = {
        "default_room": channel,
        "irc": {"host": "127.0.0.1", "port": ngircd.port, "tls": False, "channels": [channel]},
    }
    bed.data["components"]["builds-api"]["room"] = channel
    bed.data["auth"] = {
        "rules": [{"who": ["irc-host:alice*"], "role": "admin", "trust": "hostmask"}]
    }
    app = App(bed.config)
    alice, bob = RawIrcClient(ngircd.port, unique("alice")), RawIrcClient(ngircd.port, "bob")
    await app.start()
    syncs: list[dict[str, object]] = []
    try:
        await until(lambda: all(a.connected for a in app.adapters), "the bot on IRC", every=0.02)
        for client in (alice, bob):
            await client.connect()
            await client.join(channel)
        await alice.privmsg(channel, "!apply builds-api toolsbeta")

        def sync_started() -> bool:
            syncs[:] = [c for c in bed.records() if c["sub"] == "apply"]
            return bool(syncs)

        await until(sync_started, "helmfile sync to start", every=0.02)
        for text, pattern in (("!whoami", r"^you are irc-host:bob"), ("!status", r"builds-api")):
            mark = len(bob.lines)
            await bob.privmsg(channel, text)
            reply = await said(bob, nick, channel, pattern, mark)
            assert reply
            # answered while the deploy is still in its sync step (it waits for our go)
            rows = await app.store.fetchall("SELECT state FROM deploys")
            assert [r["state"] for r in rows] == ["applying"]
            assert not Path(f"{bed.record}.ack-{syncs[0]['pid']}").exists()
        mark = len(alice.lines)
        bed.kube.start_rollout(NS, "builds-api", version=new)
        Path(f"{bed.record}.ack-{syncs[0]['pid']}").touch()
        done = await said(alice, nick, channel, r"^apply: |deploy #1 ", 0)
        assert done
    finally:
        for client in (alice, bob):
            await client.close()
        await app.stop()
