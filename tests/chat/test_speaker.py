"""What counts as a command having told its user something (`Speaker`): a line queued where
they read — their room on their network, or anywhere on a one-stream connection (the
console) — and not news in another room. The dispatcher says "working on it…" only before
that (tests/commands/test_working_on_it.py has the whole path)."""

from __future__ import annotations

from bot.config.model import FloodConfig
from bot.delivery.outbox import Outbox, Speaker, speaker
from bot.store.db import Store
from tests.support.chatfakes import RecordingChat


class Console(RecordingChat):
    name = "console"
    one_stream = True


async def _told(outbox: Outbox, voice: Speaker, room: str, adapter: str | None = None) -> bool:
    token = speaker.set(voice)
    try:
        await outbox.enqueue(room, "deploying builds-api 0.0.133 to toolsbeta", adapter=adapter)
    finally:
        speaker.reset(token)
    return voice.told


async def test_only_a_line_where_the_user_reads_counts(store: Store) -> None:
    irc = Outbox(store, [RecordingChat()], FloodConfig())
    assert await _told(irc, Speaker("irc", "#ops"), "#ops")
    assert not await _told(irc, Speaker("irc", "#ops"), "#toolforge-deploy")
    assert not await _told(irc, Speaker("xmpp", "ops@muc.example.org"), "#ops")
    # a private reply goes to the nick the command came from
    assert await _told(irc, Speaker("irc", "alice"), "alice", adapter="irc")
    console = Outbox(store, [Console()], FloodConfig())
    assert await _told(console, Speaker("console", "console"), "#toolforge-deploy")
