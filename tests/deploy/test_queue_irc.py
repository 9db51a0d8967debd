"""The deploy queue on a real IRC server (ngircd) with two people: bob's `!apply --queue`
waits behind alice's running deploy and runs when it ends; a queued apply whose gate closed
meanwhile (a freeze) is refused to bob by name. The deploy's `helmfile sync` (the recording
fake) waits for the test's go, so "while alice's deploy runs" is a fact, not a timing. While
alice's deploy runs, toolsbeta's pin moves to the newest release (a merged bump), so bob's
turn has something to apply: the same pin again would be "nothing to apply"."""

from __future__ import annotations

import re
from pathlib import Path

from bot.app import App
from bot.core.git import git
from tests.support.deployworld import NS, DeployBed, bed  # noqa: F401  (fixture)
from tests.support.ircservers import Ngircd, RawIrcClient, ngircd_fixture, unique  # noqa: F401
from tests.support.poll import until


async def said(client: RawIrcClient, bot: str, channel: str, pattern: str, since: int) -> str:
    line = await client.wait_for(
        lambda ln: (
            ln.command == "PRIVMSG"
            and (ln.nick or "").lower() == bot.lower()
            and ln.param(0).lower() == channel.lower()
            and re.search(pattern, ln.param(1)) is not None
        ),
        30,
        since,
    )
    return line.param(1)


class Room:
    def __init__(self, bed: DeployBed, ngircd: Ngircd) -> None:  # noqa: F811
        self.bed = bed
        self.nick, self.channel = unique("qbot"), unique("#queue")
        bed.data["bot"]["nick"] = self.nick
        bed.data["chat"] = {
            "default_room": self.channel,
            "irc": {"host": "127.0.0.1", "port": ngircd.port, "tls": False,
                    "channels": [self.channel]},
        }  # fmt: skip
        bed.data["components"]["builds-api"]["room"] = self.channel
        bed.data["auth"] = {
            "rules": [
                {"who": ["irc-host:alice*"], "role": "admin", "trust": "hostmask"},
                {"who": ["irc-host:bob*"], "role": "deployer", "trust": "hostmask"},
            ]
        }
        self.alice = RawIrcClient(ngircd.port, unique("alice"))
        self.bob = RawIrcClient(ngircd.port, unique("bob"))

    def syncs(self) -> list[dict[str, object]]:
        return [c for c in self.bed.records() if c["sub"] == "apply"]

    def go(self, nth: int, version: str) -> None:
        """Let the nth sync finish, the fake cluster rolling out `version`."""
        self.bed.kube.start_rollout(NS, "builds-api", version=version)
        Path(f"{self.bed.record}.ack-{self.syncs()[nth - 1]['pid']}").touch()


async def repin(world: DeployBed, version: str, tmp: Path) -> None:
    """Move toolsbeta's pin on the control repo's main, as a merged bump MR would."""
    work = tmp / "repin"
    await git("clone", "-q", str(world.control_repo), str(work), cwd=tmp)
    values = work / "components/builds-api/values/toolsbeta.yaml"
    text = values.read_text()
    old = text.split("chartVersion:", 1)[1].split()[0]
    values.write_text(text.replace(old, version, 1))
    await git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qam", "bump", cwd=work)
    await git("push", "-q", "origin", "HEAD:main", cwd=work)


async def start(room: Room) -> App:
    app = App(room.bed.config)
    await app.start()
    await until(
        lambda: all(a.connected for a in app.adapters), "the bot on IRC", within=30.0, every=0.02
    )
    for client in (room.alice, room.bob):
        await client.connect()
        await client.join(room.channel)
    return app


async def test_bobs_queued_apply_runs_when_alices_deploy_ends(
    bed: DeployBed,  # noqa: F811
    ngircd: Ngircd,  # noqa: F811
    tmp_path: Path,
) -> None:
    old, new, newest = bed.releases[-3], bed.pins["toolsbeta"], bed.releases[-1]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.push(newest)
    bed.script({"helmfile apply": {"ack": True}})
    room = Room(bed, ngircd)
    app = await start(room)
    try:
        await room.alice.privmsg(room.channel, "!apply builds-api toolsbeta")
        await until(lambda: len(room.syncs()) == 1, "alice's sync", within=30.0, every=0.02)
        mark = len(room.bob.lines)
        await room.bob.privmsg(room.channel, "!apply builds-api toolsbeta --queue")
        queued = await said(room.bob, room.nick, room.channel, r"queued #", mark)
        alice = room.alice.nick
        assert re.search(rf"^{room.bob.nick}: queued #1 behind deploy #1 \({alice}\);", queued)
        await room.bob.privmsg(room.channel, "!queue")
        listed = await said(room.bob, room.nick, room.channel, r"#1 !apply", mark)
        assert f"by {room.bob.nick} (queued behind deploy #1 ({alice}))" in listed
        assert len(room.syncs()) == 1  # bob's waits
        await repin(bed, newest, tmp_path)
        room.go(1, new)
        await until(
            lambda: len(room.syncs()) == 2,
            "bob's sync after alice's deploy",
            within=30.0,
            every=0.02,
        )
        room.go(2, newest)
        # its own line, or the last part of a packed one (a busy connection packs news)
        await said(room.bob, room.nick, room.channel, r"(?:^| \| )deploy #2 done: ", mark)
        rows = await app.store.fetchall("SELECT id, state, actor FROM deploys ORDER BY id")
        assert [(r["state"], r["actor"].split(":")[1][:3]) for r in rows] == [
            ("done", "ali"), ("done", "bob"),
        ]  # fmt: skip
        queue = [(e.result, e.component) for e in await app.services.sal.query(limit=50)
                 if e.action == "queue"]  # fmt: skip
        assert sorted(queue) == [("queued", "builds-api"), ("started", "builds-api")]
        entry = await app.store.fetchone("SELECT state FROM deploy_queue WHERE id=1")
        assert entry["state"] == "done"
    finally:
        for client in (room.alice, room.bob):
            await client.close()
        await app.stop()


async def test_a_queued_apply_whose_gate_closed_is_refused_to_its_owner_by_name(
    bed: DeployBed,  # noqa: F811
    ngircd: Ngircd,  # noqa: F811
    tmp_path: Path,
) -> None:
    old, new, newest = bed.releases[-3], bed.pins["toolsbeta"], bed.releases[-1]
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=old)
    bed.push(new)
    bed.push(newest)
    bed.script({"helmfile apply": {"ack": True}})
    room = Room(bed, ngircd)
    app = await start(room)
    try:
        await room.alice.privmsg(room.channel, "!apply builds-api toolsbeta")
        await until(lambda: len(room.syncs()) == 1, "alice's sync", within=30.0, every=0.02)
        mark = len(room.bob.lines)
        await room.bob.privmsg(room.channel, "!apply builds-api toolsbeta --queue")
        await said(room.bob, room.nick, room.channel, r"queued #1 behind deploy #1", mark)
        await repin(bed, newest, tmp_path)
        await room.alice.privmsg(room.channel, '!freeze toolsbeta 1h "incident in progress"')
        await said(room.bob, room.nick, room.channel, r"deploy freeze started", mark)
        room.go(1, new)
        refused = await said(room.bob, room.nick, room.channel, r"queue #1: ", mark)
        assert refused.startswith(f"{room.bob.nick}: queue #1: apply: refused: toolsbeta is frozen")
        assert "incident in progress" in refused
        assert len(room.syncs()) == 1  # nothing of bob's ran
        refusals = [e for e in await app.services.sal.query(limit=50) if e.result == "refused"]
        assert len(refusals) == 1 and refusals[0].actor.startswith("irc-host:bob")
    finally:
        for client in (room.alice, room.bob):
            await client.close()
        await app.stop()
