"""The XMPP chat adapter: MUC rooms and direct chats over slixmpp.

It turns groupchat and direct messages into `Message` values carrying the sender's bare
JID as identity (real JID in non-anonymous rooms; none in anonymous ones), sends replies
and announcements, and keeps one session alive: each connection is a fresh slixmpp
client, reconnected with exponential backoff plus jitter, rooms rejoined every time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

from bot.chat.base import Message, OnMessage
from bot.chat.mucrooms import REGAIN_EVERY, RoomKeeper
from bot.core.tasks import TaskSet, within

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 3000  # per stanza; servers commonly cap stanzas around 10-256 KB
MAX_CHUNKS = 8  # longer output belongs behind a link, not in the room
TRUNCATED = "… (truncated)"
# Characters XML 1.0 forbids (they would get the stream killed) plus C1 controls.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def clean_text(text: str) -> str:
    """Normalise newlines and drop control characters; keeps `\\n` and `\\t`."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE.sub("", text)


def split_body(text: str, limit: int = MAX_BODY_BYTES, max_chunks: int = MAX_CHUNKS) -> list[str]:
    """Split into bodies of at most `limit` UTF-8 bytes, at a newline when there is one."""
    chunks: list[str] = []
    rest = text
    while rest:
        if len(rest.encode()) <= limit:
            chunks.append(rest)
            break
        head = rest.encode()[:limit].decode("utf-8", "ignore")  # drops a cut character
        newline = head.rfind("\n")
        if newline > 0:
            chunks.append(head[:newline])
            rest = rest[newline + 1 :]
        else:
            chunks.append(head)
            rest = rest[len(head) :]
    chunks = [c for c in chunks if c.strip()]
    if len(chunks) > max_chunks:
        last = chunks[max_chunks - 1]
        room = limit - len(TRUNCATED.encode()) - 1
        last = last.encode()[:room].decode("utf-8", "ignore")
        chunks = chunks[: max_chunks - 1] + [f"{last}\n{TRUNCATED}"]
    return chunks


def _encrypted(client: slixmpp.ClientXMPP) -> bool:
    transport = client.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def backoff_delay(failures: int, cap: float, base: float = 1.0) -> float:
    """Exponential delay with jitter: between half and all of min(cap, base * 2**failures)."""
    ceiling = min(cap, base * 2 ** min(failures, 30))
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


def _said_when(msg: slixmpp.Message) -> dict[str, Any]:
    """`edit_of` for a XEP-0308 correction, `replayed` for history or a XEP-0203 delay."""
    replace = msg.get_plugin("replace", check=True)
    return {
        "edit_of": str(replace["id"] or "") if replace is not None else None,
        "replayed": msg.get_plugin("delay", check=True) is not None,
    }


def _stamp(msg: slixmpp.Message) -> float:
    """When `msg` was said: its XEP-0203 delay stamp, else now (wall clock)."""
    delay = msg.get_plugin("delay", check=True)
    stamp = delay["stamp"] if delay is not None else None
    return stamp.timestamp() if isinstance(stamp, datetime) else time.time()


class XmppAdapter:
    """ChatAdapter for one XMPP account, its MUC rooms and its direct chats.

    After a connection is lost, each room is rejoined asking for its history since the last
    stanza the bot saw there; a line from that history (said while the bot was cut off) is
    handed on with `cut_off` set, so a command in it is answered "missed", never run.
    """

    name = "xmpp"
    rate_limited = True
    one_stream = False

    def __init__(
        self,
        jid: str,
        password: str,
        rooms: list[str],
        *,
        host: str | None = None,
        port: int = 5222,
        nick: str = "deploybot",
        tls: bool = True,
        reconnect_max: float = 60.0,
        timeout: float = 20.0,
        ping_interval: float = 30.0,
        ping_timeout: float = 10.0,
        join_retry: float = 5.0,
        join_retry_max: float = 60.0,
        regain_every: float = REGAIN_EVERY,
    ) -> None:
        self._jid = JID(jid)
        self._password = password
        self._rooms = tuple(dict.fromkeys(JID(r).bare for r in rooms))
        self._host = host
        self._port = port
        self._nick = nick
        self._tls = tls
        self._reconnect_max = reconnect_max
        self._timeout = timeout
        self._ping_interval, self._ping_timeout = ping_interval, ping_timeout
        self._join_retry, self._join_retry_max = join_retry, join_retry_max
        self._regain_every = regain_every
        self._client: slixmpp.ClientXMPP | None = None
        self._keepers: dict[str, RoomKeeper] = {}  # room bare JID -> its membership
        self._ready = False
        self._stopping = False
        self._on_message: OnMessage | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._handlers = TaskSet()
        self._heard = time.time()  # wall clock: the server last said something
        self._seen: dict[str, float] = {}  # room -> when the last stanza seen there was said
        self._cut: dict[str, float] = {}  # room -> since when the bot could not hear it

    # -- ChatAdapter -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        client = self._client
        return self._ready and client is not None and client.is_connected()

    def room_states(self) -> dict[str, bool]:
        return {room: self._nick_in(room) is not None for room in self._rooms}

    def ready_in(self) -> float:
        return 0.0  # no wire budget of its own: the outbox's per-room budget paces it

    def _nick_in(self, room: str) -> str | None:
        keeper = self._keepers.get(room)
        return keeper.nick if keeper is not None and self.connected else None

    def owns(self, room: str) -> bool:
        """Rooms and JIDs are ours: anything with an `@` that is not an IRC channel."""
        return "@" in room and not room.startswith(("#", "&"))

    async def start(self, on_message: OnMessage) -> None:
        if self._supervisor is not None:
            raise RuntimeError("xmpp adapter already started")
        self._on_message = on_message
        self._supervisor = asyncio.create_task(self._supervise(), name="xmpp-supervisor")

    async def send(
        self, room: str, text: str, *, keys: Iterable[str] = (), reply: bool = False
    ) -> None:
        client = self._client
        if client is None or not self.connected:
            raise ConnectionError("xmpp: not connected")
        target = JID(room)
        mtype: Literal["chat", "groupchat"] = "chat"
        if target.bare in self._rooms and not target.resource:
            if self._nick_in(target.bare) is None:
                raise ConnectionError(f"xmpp: not joined to {target.bare}")
            mtype = "groupchat"
        for body in split_body(clean_text(text)):
            client.send_message(mto=target, mbody=body, mtype=mtype)

    async def stop(self) -> None:
        supervisor, self._supervisor = self._supervisor, None
        client = self._client
        self._stopping = True
        self._ready = False
        if client is not None and client.is_connected():
            for room, keeper in self._keepers.items():
                if keeper.nick is not None:
                    with contextlib.suppress(Exception):
                        client.plugin["xep_0045"].leave_muc(JID(room), keeper.nick)
            with contextlib.suppress(Exception):
                await within(client.disconnect(wait=1.0), timeout=self._timeout)
        if supervisor is not None:
            supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await supervisor
        self._handlers.cancel()
        await self._handlers.wait(self._timeout)

    # -- session lifecycle -------------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while not self._stopping:
            client = self._new_client()
            self._client = client
            try:
                await self._run_session(client)
                failures = 0
                if not self._stopping:
                    log.warning("xmpp: disconnected from server; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: log, back off, reconnect
                failures += 1
                log.warning("xmpp: connection failed (%s: %s)", type(exc).__name__, exc)
            finally:
                self._ready = False
                for room, keeper in self._keepers.items():
                    if keeper.nick is not None or room in self._seen:
                        self._cut.setdefault(room, self._heard)
                await self._dispose(client)
            if not self._stopping:
                await asyncio.sleep(backoff_delay(failures, self._reconnect_max))

    def _new_client(self) -> slixmpp.ClientXMPP:
        client = slixmpp.ClientXMPP(self._jid, self._password)
        direct = self._host is None or self._port == 5223
        client.enable_direct_tls = self._tls and direct
        client.enable_starttls = self._tls and not (self._host is not None and self._port == 5223)
        client.enable_plaintext = not self._tls
        for plugin in ("xep_0030", "xep_0045", "xep_0199", "xep_0203", "xep_0308"):
            client.register_plugin(plugin)
        mechanisms = client.plugin["feature_mechanisms"]
        mechanisms.unencrypted_plain = mechanisms.unencrypted_scram = not self._tls
        client.add_event_handler("groupchat_message", self._on_groupchat)
        client.add_event_handler("message", self._on_direct)
        client.add_event_handler("groupchat_presence", self._on_presence)  # muc#user ones
        client.add_event_handler("groupchat_subject", self._on_subject)  # after the history
        client.add_event_handler("presence_error", self._on_presence)  # even without MUC <x/>
        return client

    def _on_subject(self, msg: slixmpp.Message) -> None:
        """The subject comes after a room's history on join: the cut was read up."""
        self._heard = time.time()
        self._cut.pop(msg["from"].bare, None)

    def _on_presence(self, pr: slixmpp.Presence) -> None:
        self._heard = time.time()
        if pr["type"] == "error" and pr.get_plugin("muc", check=True) is not None:
            return  # also seen as a groupchat_presence
        keeper = self._keepers.get(pr["from"].bare)
        if keeper is not None and keeper.client is self._client:
            keeper.on_presence(pr)

    async def _run_session(self, client: slixmpp.ClientXMPP) -> None:
        """Connect, authenticate, join rooms; return when the connection is gone."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        gone: asyncio.Future[None] = loop.create_future()

        def fail(reason: str) -> None:
            if not started.done():
                started.set_exception(ConnectionError(reason))

        def on_disconnected(reason: object) -> None:
            fail(f"disconnected before session start: {reason}")
            if not gone.done():
                gone.set_result(None)

        def on_started(_: object) -> None:
            if not started.done():
                started.set_result(None)

        client.add_event_handler("session_start", on_started)

        def on_auth_failed(_: object) -> None:
            if self._tls and not _encrypted(client):
                fail("server offers no TLS; credentials are not sent in plaintext")
            else:
                fail("authentication failed")

        client.add_event_handler("failed_all_auth", on_auth_failed)
        client.add_event_handler("disconnected", on_disconnected)

        attempt = client.connect(self._host, self._port) if self._host else client.connect()
        if await within(attempt, timeout=self._timeout) is not None:
            raise ConnectionError(f"cannot reach {self._host or self._jid.domain}")
        await within(started, timeout=self._timeout)
        if self._tls and not _encrypted(client):
            raise ConnectionError("server did not negotiate TLS (set tls: false to allow)")
        client.send_presence()
        self._keepers = self._new_keepers(client)
        keeping = [
            asyncio.create_task(k.run(), name=f"xmpp-room-{r}") for r, k in self._keepers.items()
        ]
        self._ready = True
        log.info("xmpp: connected as %s; joining %s", client.boundjid.bare, list(self._rooms))
        try:
            await self._keep_alive(client, gone)
        finally:
            for task in keeping:
                task.cancel()
            await asyncio.gather(*keeping, return_exceptions=True)

    def _new_keepers(self, client: slixmpp.ClientXMPP) -> dict[str, RoomKeeper]:
        """A keeper per room for this connection; after a cut, each asks for the history
        since the last stanza seen in its room."""
        keepers = {
            room: RoomKeeper(
                client,
                room,
                self._nick,
                timeout=self._timeout,
                retry=self._join_retry,
                retry_max=self._join_retry_max,
                regain_every=self._regain_every,
            )  # fmt: skip
            for room in self._rooms
        }
        for room, keeper in keepers.items():
            if (cut := self._cut.get(room)) is not None:
                keeper.history_since = datetime.fromtimestamp(self._seen.get(room, cut), UTC)
        return keepers

    async def _keep_alive(self, client: slixmpp.ClientXMPP, gone: asyncio.Future[None]) -> None:
        """Wait for the disconnect; ping the server meanwhile so a dead link is noticed."""
        while not gone.done():
            await asyncio.wait({gone}, timeout=self._ping_interval)
            if gone.done():
                return
            try:
                await client.plugin["xep_0199"].ping(timeout=self._ping_timeout)
                self._heard = time.time()
            except IqError:
                self._heard = time.time()  # the server answered: the link is alive
            except IqTimeout:
                log.warning("xmpp: server did not answer a ping; dropping the connection")
                client.abort()
                return

    async def _dispose(self, client: slixmpp.ClientXMPP) -> None:
        """Make sure a finished client leaves no connection, timer or task behind."""
        if self._client is client:
            self._client = None
        client.cancel_connection_attempt()
        client.abort()
        for name in list(client.scheduled_events):
            client.cancel_schedule(name)
        sender = client._run_out_filters  # slixmpp never stops its send loop on its own
        if sender is not None:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    # -- incoming ----------------------------------------------------------------------

    def _on_groupchat(self, msg: slixmpp.Message) -> None:
        room = msg["from"].bare
        nick = msg["from"].resource
        body = str(msg["body"]).strip()
        own_nick = self._nick_in(room)
        said, stamp = _said_when(msg), _stamp(msg)
        self._heard, seen = time.time(), self._seen.get(room)
        self._seen[room] = max(stamp, seen or stamp)
        if own_nick is None or not nick or nick == own_nick or not body:
            return  # not (yet) joined; or room notice; or our echo
        real = self._real_jid(msg["from"])
        if real == self._jid.bare:
            return  # another session of our own account
        identities = (f"xmpp:{real}",) if real else ()
        cut = self._cut.get(room)
        if said["replayed"] and cut is not None:  # the history asked for after a cut
            if seen is not None and stamp <= seen:
                return  # seen before the cut
            said["cut_off"] = (cut, time.time())
        self._deliver(Message("xmpp", room, nick, body, identities, to_nick=own_nick, **said))

    def _on_direct(self, msg: slixmpp.Message) -> None:
        if msg["type"] not in ("chat", "normal"):
            return
        sender: JID = msg["from"]
        body = str(msg["body"]).strip()
        if not body or not sender.bare or sender.bare == self._jid.bare:
            return
        said = _said_when(msg)  # offline (delayed) messages and corrections are never run
        if sender.bare in self._rooms:
            # Private message from a room occupant: reply to the occupant JID, identity is
            # the real JID when the room shows it (non-anonymous), else none.
            if not sender.resource:
                return
            real = self._real_jid(sender)
            identities = (f"xmpp:{real}",) if real else ()
            self._deliver(
                Message("xmpp", sender.full, sender.resource, body, identities, True, **said)
            )
            return
        if msg.get_plugin("muc", check=True) is not None:
            return  # invitation or notice from a room we are not in
        identities = (f"xmpp:{sender.bare}",)
        self._deliver(
            Message("xmpp", sender.bare, sender.user or sender.bare, body, identities, True, **said)
        )

    def _real_jid(self, occupant: JID) -> str | None:
        client = self._client
        if client is None:
            return None
        real = client.plugin["xep_0045"].get_jid_property(
            JID(occupant.bare), occupant.resource, "jid"
        )
        return JID(str(real)).bare if real else None

    def _deliver(self, message: Message) -> None:
        if self._on_message is None:
            return
        self._handlers.spawn(self._call_handler(message))

    async def _call_handler(self, message: Message) -> None:
        assert self._on_message is not None
        try:
            await self._on_message(message)
        except Exception:
            log.exception("xmpp: message handler failed for a message in %s", message.room)
