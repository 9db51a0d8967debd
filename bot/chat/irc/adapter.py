"""IRC chat adapter: our own small asyncio IRCv3 client (CAP 302, SASL PLAIN, account tracking).

We tried pydle 1.2 against InspIRCd+Atheme: SASL worked, but it hides message tags from
`on_message`, requests capabilities we did not ask for (echo-message) and WHOISes every user;
jaraco `irc` and `bottom` (per their docs) leave CAP/SASL to the caller anyway. Since the bot's
authorization rests on exactly these details (account-tag, extended-join, account-notify, WHOX)
and on byte-exact line splitting, a protocol layer of a few hundred lines that we control and
test against real servers is simpler and safer than adapting a library.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import time
from collections.abc import Iterable

from bot.chat.base import Message, OnMessage
from bot.chat.irc.channels import JOIN_ERRORS, ChannelKeeper
from bot.chat.irc.errors import describe
from bot.chat.irc.proto import (
    DEFAULT_PREFIX_LEN,
    AccountTracker,
    Line,
    account_name,
    format_line,
    irc_lower,
    parse_line,
    split_text,
)
from bot.chat.irc.session import NICK_IN_USE, WANTED_CAPS, Registration, redact
from bot.chat.irc.wire import WireSender
from bot.chat.pacing import WirePacer
from bot.core.tasks import within

WHOX_TOKEN = "42"
REGAIN_INTERVAL = 30.0
MAX_PRIVATE_ROOMS = 1000
REPLAY_BATCHES = frozenset({"chathistory", "draft/chathistory", "znc.in/playback"})
EDIT_TAGS = ("+draft/edit", "draft/edit")
LINGER_QUIT = "deploybot reconnecting"  # the server's ERROR quoting it answers our QUIT
LINGER_MAX = 120.0  # a dead connection's socket is read at most this long


class IrcAdapter:
    """ChatAdapter for one IRC network; reconnects forever (backoff with jitter) until stop().

    A failed SASL login (904/905...) is logged as an error (without the password) and the bot
    continues unauthenticated: announcements keep flowing, and users' identities do not depend
    on the bot's own login. on_message is called from one worker task, in order; keep it quick.

    A connection found dead (no answer within the ping timeout) is not simply dropped: the bot
    writes QUIT into it and reads its socket a little longer (`_linger`), because a server that
    was only frozen still handles what was written and answers there. A late PONG, the echo of
    a line (echo-message) or the ERROR answering that QUIT proves which lines reached the
    channel, and those are not sent again. Once back in a channel after such a cut, the bot
    hands on_message one `Message` with `cut_off` set and no text: the room is told when the
    bot could not hear it (the server offers no history to read what was said meanwhile).
    """

    name = "irc"
    rate_limited = True
    one_stream = False

    def __init__(
        self,
        host: str,
        port: int,
        nick: str,
        channels: list[str],
        *,
        tls: bool = False,
        sasl_username: str | None = None,
        sasl_password: str | None = None,
        realname: str = "deploybot",
        ping_interval: float = 30.0,
        ping_timeout: float = 10.0,
        reconnect_max: float = 60.0,
        join_retry: float = 5.0,
        join_retry_max: float = 60.0,
        logger_name: str = "deploybot.irc",
        flood: tuple[int, float] | None = None,
        caps: Iterable[str] = WANTED_CAPS,
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self._wanted_nick = nick
        self._channels = list(channels)
        self._sasl = (sasl_username, sasl_password) if sasl_username and sasl_password else None
        self._realname = realname
        self._wanted_caps = frozenset(caps) & WANTED_CAPS
        self._ping_interval, self._ping_timeout = ping_interval, ping_timeout
        self._join_retry = (join_retry, join_retry_max)
        self._reconnect_max = reconnect_max
        self._log = logging.getLogger(logger_name)
        self._pacer = WirePacer(flood, now=0.0)  # flood None: chosen from the server software
        self._wire = WireSender(self._pacer, self._write, self._deliverable, self._prefix_len)
        self._wire.log = self._log
        self._private_rooms: dict[str, None] = {}  # insertion-ordered set, bounded
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize=1000)
        self._on_message: OnMessage | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._linger_task: asyncio.Task[None] | None = None  # the last dead connection's socket
        self._cut_from: float | None = None  # wall clock: last heard before a cut (None: none)
        self._cut_rooms: set[str] = set()  # channels (folded) not yet told about that cut
        self._reset_session()

    def _reset_session(self) -> None:
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.StreamReader | None = None
        self._echoes = 0  # our own lines the server echoed on this connection (echo-message)
        self._heard_wall = time.time()  # wall clock of the last line from the server
        self._registered_at: float | None = None
        self._registered = False
        self._nick = self._wanted_nick
        self._reg = Registration(self._wanted_nick, self._wanted_caps, self._sasl, self._log)
        self._joined: set[str] = set()
        retry, retry_max = self._join_retry
        self._chans = ChannelKeeper(self._channels, self._fold, retry=retry, retry_max=retry_max)
        self._batches: dict[str, str] = {}  # open BATCH reference -> its type
        self._accounts = AccountTracker()
        self._own_prefix: str | None = None
        self._last_rx = 0.0
        self._pinged = False
        self._next_regain = 0.0

    # ---- ChatAdapter port -------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._writer is not None and self._registered

    def room_states(self) -> dict[str, bool]:
        states = self._chans.states()
        return states if self.connected else dict.fromkeys(states, False)

    def ready_in(self) -> float:
        return self._wire.ready_in()

    @property
    def nick(self) -> str:
        """The nick currently in use (may differ from the configured one after a 433)."""
        return self._nick

    def owns(self, room: str) -> bool:
        folded = self._fold(room)
        if any(self._fold(c) == folded for c in self._channels):
            return True
        return folded in self._private_rooms or folded in self._joined

    async def start(self, on_message: OnMessage) -> None:
        self._on_message = on_message
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._run(), name="irc-connection"),
            asyncio.create_task(self._deliver(), name="irc-deliver"),
        ]

    async def send(
        self, room: str, text: str, *, keys: Iterable[str] = (), reply: bool = False
    ) -> None:
        if not self.connected:
            raise ConnectionError("IRC is not connected")
        if self._chans.configured(room) and not self._chans.is_joined(room):
            raise ConnectionError(f"IRC: not in {room} ({self._chans.reason(room) or 'joining'})")
        lines = split_text(room, text, prefix_len=self._prefix_len())
        await self._wire.send(lines, frozenset(keys), reply)

    def _prefix_len(self) -> int:
        return len(self._own_prefix.encode()) if self._own_prefix else DEFAULT_PREFIX_LEN

    def _deliverable(self, to: str) -> bool:  # to "": any line, as far as the connection goes
        return self.connected and (self._chans.is_joined(to) or not self._chans.configured(to))

    async def stop(self) -> None:
        self._stopping = True
        writer = self._writer
        if writer is not None:
            with contextlib.suppress(OSError, TimeoutError):
                self._write(format_line("QUIT", "deploybot shutting down"))
                await within(writer.drain(), timeout=2)
            writer.close()
        await self._wire.stop()
        self._end_linger()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._linger_task is not None:
            await asyncio.gather(self._linger_task, return_exceptions=True)
        self._tasks = []
        self._writer = None

    # ---- connection lifecycle ----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            try:
                await self._session()
            except (OSError, TimeoutError, ValueError) as exc:  # ConnectionError is an OSError
                why = describe(exc, self._host, self._port, self._tls, self._registered)
                self._log.warning("IRC: %s", why)
            except Exception:
                self._log.exception("IRC session failed unexpectedly; reconnecting")
            if self._registered:
                attempt = 0
            self._lost()
            self._reset_session()
            if self._stopping:
                return
            delay = min(self._reconnect_max, 2.0**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
            attempt += 1
            self._log.info("reconnecting to IRC in %.1fs", delay)
            await asyncio.sleep(delay)

    def _lost(self) -> None:
        """The connection ended: its unconfirmed lines wait to go again; a registered one
        lingers (see the class doc) and its channels are owed a word about the cut."""
        writer, reader, registered = self._writer, self._reader, self._registered
        connection, echoes = self._wire.fence.connection, self._echoes
        echo = "echo-message" in self._reg.caps
        self._wire.lost()
        if registered and not self._stopping:
            if self._cut_from is None:
                self._cut_from = self._heard_wall
            self._cut_rooms = {self._fold(c) for c in self._channels}
        if writer is None:
            return
        if not registered or reader is None or writer.is_closing() or self._stopping:
            writer.close()
            return
        self._end_linger()
        self._linger_task = asyncio.create_task(
            self._linger(reader, writer, connection, echoes if echo else None, self._nick),
            name="irc-linger",
        )
        self._wire.settling = self._linger_task

    def _end_linger(self) -> None:
        if self._linger_task is not None and not self._linger_task.done():
            self._linger_task.cancel()

    async def _linger(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: int,
        echoes: int | None,
        nick: str,
    ) -> None:
        """Read a dead connection's socket for its last word (bounded: LINGER_MAX, and the
        adapter ends it `ping_timeout` after the next connection registered)."""
        fence, spared = self._wire.fence, 0
        try:
            async with asyncio.timeout(LINGER_MAX):
                writer.write(format_line("QUIT", LINGER_QUIT).encode() + b"\r\n")
                while raw := await reader.readline():
                    text = raw.decode("utf-8", "replace").strip("\r\n")
                    if not text.strip():
                        continue
                    line = parse_line(text)
                    if line.command == "PONG" and (told := fence.lost_ping(line.params[-1])):
                        spared += fence.confirmed_late(*told)
                    elif line.command == "PRIVMSG" and echoes is not None and line.nick == nick:
                        echoes += 1  # the echo of our line number `echoes` on it
                        spared += fence.confirmed_late(connection, echoes)
                    elif line.command == "ERROR" and LINGER_QUIT in line.param(0):
                        spared += fence.confirmed_late(connection)  # handled all before QUIT
                        break
        except (OSError, TimeoutError, ValueError, IndexError):
            pass
        finally:
            writer.close()
            if spared:
                self._log.info("the old connection proved %d lines reached IRC; not resent", spared)

    async def _session(self) -> None:
        ctx = ssl.create_default_context() if self._tls else None
        reader, writer = await within(
            asyncio.open_connection(
                self._host, self._port, ssl=ctx, ssl_handshake_timeout=15 if ctx else None
            ),
            timeout=30,
        )
        loop = asyncio.get_running_loop()
        self._writer = self._wire.writer = writer
        self._reader = reader
        self._pacer.new_connection(loop.time())
        self._last_rx = loop.time()
        self._write_all(self._reg.greeting(self._nick, self._realname))
        dead_after = self._ping_interval + self._ping_timeout
        while True:
            idle = loop.time() - self._last_rx
            try:
                raw = await within(
                    reader.readline(), timeout=max(0.05, min(1.0, dead_after - idle))
                )
            except TimeoutError:
                raw = None
            now = loop.time()
            if raw is not None:
                if not raw:
                    raise ConnectionError("server closed the connection")
                self._last_rx, self._pinged, self._heard_wall = now, False, time.time()
                text = raw.decode("utf-8", "replace").strip("\r\n")
                if text.strip():
                    self._log.debug("<< %s", text)
                    try:
                        self._handle(parse_line(text))
                    except (ValueError, IndexError):
                        self._log.warning("ignoring malformed line from server: %r", text[:200])
            self._maintain(now)

    def _maintain(self, now: float) -> None:
        idle = now - self._last_rx
        if idle >= self._ping_interval + self._ping_timeout:
            raise ConnectionError(f"no data from server for {idle:.0f}s (ping unanswered)")
        if not self._registered:
            return
        linger = self._linger_task
        if linger is not None and not linger.done() and self._registered_at is not None:
            if now - self._registered_at >= self._ping_timeout:  # its server would have spoken
                linger.cancel()
        self._wire.check_pong(now, self._ping_interval + self._ping_timeout)
        if idle >= self._ping_interval and not self._pinged:
            self._wire.keepalive(now)
            self._pinged = True
        if self._fold(self._nick) != self._fold(self._wanted_nick) and now >= self._next_regain:
            self._regain_nick(now)
        self._join_due(now)

    def _join_due(self, now: float) -> None:
        if due := self._chans.due(now):
            self._write(format_line("JOIN", ",".join(due)))

    def _regain_nick(self, now: float) -> None:
        if self._registered and self._fold(self._nick) != self._fold(self._wanted_nick):
            self._next_regain = now + REGAIN_INTERVAL
            self._write(format_line("NICK", self._wanted_nick))

    def _write(self, line: str, paced: bool = False) -> None:
        if self._writer is None:
            raise ConnectionError("IRC is not connected")
        if self._registered and not paced:  # JOIN, WHO, PONG...: the same budget, into debt
            self._pacer.charge(asyncio.get_running_loop().time())
        self._log.debug(">> %s", redact(line))
        self._writer.write(line.encode("utf-8") + b"\r\n")

    def _write_all(self, lines: list[str]) -> None:
        for line in lines:
            self._write(line)

    async def _deliver(self) -> None:
        while True:
            msg = await self._queue.get()
            if self._on_message is None:
                continue
            try:
                await self._on_message(msg)
            except Exception:
                self._log.exception("on_message failed for a line from %s", msg.nick)

    # ---- incoming lines ----------------------------------------------------------------

    def _fold(self, name: str) -> str:
        return irc_lower(name, self._reg.casemapping)

    def _is_me(self, nick: str | None) -> bool:
        return nick is not None and self._fold(nick) == self._fold(self._nick)

    def _handle(self, line: Line) -> None:
        reply = self._reg.handle(line, self._registered)
        if reply is not None:
            self._write_all(reply)
        elif (handler := getattr(self, f"_on_{line.command.lower()}", None)) is not None:
            handler(line)
        elif line.command in JOIN_ERRORS:
            now = asyncio.get_running_loop().time()
            channel, text = line.param(1), line.params[-1] if len(line.params) > 2 else ""
            delay = self._chans.refused(channel, line.command, text, now)
            if delay is not None:
                self._log.warning(
                    "cannot join %s: %s; retrying in %.0fs", channel, self._chans.reason(channel),
                    delay,
                )  # fmt: skip
        elif line.command in NICK_IN_USE | {"436"} and not self._registered:
            self._nick = self._reg.next_nick()
            self._log.warning("nick in use; trying %s", self._nick)
            self._write(format_line("NICK", self._nick))

    def _on_ping(self, line: Line) -> None:
        self._write(format_line("PONG", line.param(0, "pong")))

    def _on_pong(self, line: Line) -> None:
        self._wire.pong(line.param(len(line.params) - 1))

    def _on_error(self, line: Line) -> None:
        self._log.warning("server says ERROR: %s", line.param(0))

    def _on_001(self, line: Line) -> None:
        self._registered = True
        self._registered_at = asyncio.get_running_loop().time()
        self._nick = line.param(0, self._nick)
        self._log.info("registered on %s:%s as %s", self._host, self._port, self._nick)
        self._join_due(asyncio.get_running_loop().time())
        self._wire.resend_soon()  # lines to nicks; a channel's lines wait for its JOIN

    def _on_004(self, line: Line) -> None:  # RPL_MYINFO: <nick> <server> <version> ...
        if told := self._pacer.learn(line.param(2), asyncio.get_running_loop().time()):
            self._log.info("IRC line budget: %s", told)

    def _on_005(self, line: Line) -> None:
        self._reg.isupport(line)
        self._accounts.casemapping = self._reg.casemapping

    # ---- membership and account tracking --------------------------------------------------

    def _left(self, channel: str) -> None:
        self._joined.discard(self._fold(channel))
        self._accounts.we_left(channel)

    def _on_join(self, line: Line) -> None:
        nick, channel = line.nick or "", line.param(0)
        if self._is_me(nick):
            self._joined.add(self._fold(channel))
            self._chans.joined(channel)
            self._own_prefix = line.source
            self._log.info("joined %s", channel)
            if self._reg.whox:
                self._write(format_line("WHO", channel, f"%tcuhna,{WHOX_TOKEN}"))
            self._wire.resend_soon()
            self._tell_cut(channel)
            return
        self._accounts.joined(nick, channel)
        if "extended-join" in self._reg.caps and len(line.params) >= 2:
            self._accounts.set_account(nick, line.params[1])

    def _tell_cut(self, channel: str) -> None:
        """Back in `channel` after a cut: hand on one notice of it (once per channel)."""
        if self._cut_from is None or self._fold(channel) not in self._cut_rooms:
            return
        self._cut_rooms.discard(self._fold(channel))
        cut = (self._cut_from, time.time())
        if not self._cut_rooms:
            self._cut_from = None
        notice = Message(self.name, channel, "", "", (), replayed=True, cut_off=cut)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(notice)

    def _on_part(self, line: Line) -> None:
        if self._is_me(line.nick):
            self._left(line.param(0))
            now = asyncio.get_running_loop().time()
            if (delay := self._chans.left(line.param(0), "parted", now)) is not None:
                self._log.warning("left %s; rejoining in %.0fs", line.param(0), delay)
        else:
            self._accounts.parted(line.nick or "", line.param(0))

    def _on_kick(self, line: Line) -> None:
        channel, victim = line.param(0), line.param(1)
        if not self._is_me(victim):
            self._accounts.parted(victim, channel)
            return
        self._left(channel)
        now = asyncio.get_running_loop().time()
        delay = self._chans.left(channel, f"kicked by {line.nick}: {line.param(2)}", now)
        self._log.error(
            "kicked from %s by %s: %s%s", channel, line.nick, line.param(2),
            f"; rejoining in {delay:.0f}s" if delay is not None else "",
        )  # fmt: skip

    def _on_batch(self, line: Line) -> None:
        ref = line.param(0)
        if ref.startswith("+") and len(self._batches) < 100:
            self._batches[ref[1:]] = line.param(1)
        elif ref.startswith("-"):
            self._batches.pop(ref[1:], None)

    def _on_quit(self, line: Line) -> None:
        nick = line.nick or ""
        self._accounts.parted(nick, None)
        if self._fold(nick) == self._fold(self._wanted_nick):
            self._regain_nick(asyncio.get_running_loop().time())

    def _on_nick(self, line: Line) -> None:
        old, new = line.nick or "", line.param(0)
        if self._is_me(old):
            self._nick = new
            if self._own_prefix:
                self._own_prefix = new + self._own_prefix[len(old) :]
            self._log.info("now known as %s", new)
        else:
            self._accounts.renamed(old, new)
        if self._fold(old) == self._fold(self._wanted_nick) and not self._is_me(self._wanted_nick):
            self._regain_nick(asyncio.get_running_loop().time())

    def _on_account(self, line: Line) -> None:
        self._accounts.set_account(line.nick or "", line.param(0))

    def _on_353(self, line: Line) -> None:
        for name in line.params[-1].split():
            self._accounts.joined(name.lstrip(self._reg.name_prefixes), line.param(2))

    def _on_354(self, line: Line) -> None:
        if line.param(1) == WHOX_TOKEN and len(line.params) >= 7:
            channel, nick, account = line.params[2], line.params[5], line.params[6]
            self._accounts.joined(nick, channel)
            self._accounts.set_account(nick, account)

    def _identities(self, line: Line) -> tuple[str, ...]:
        host_id = f"irc-host:{line.source}"
        if "account-tag" in self._reg.caps:  # authoritative: no tag means not logged in
            account = account_name(line.tags.get("account"))
        else:
            account = self._accounts.account(line.nick or "")
        if account:
            return (f"irc:{account}", host_id)
        return (host_id,)

    def _on_privmsg(self, line: Line) -> None:
        nick, target, text = line.nick or "", line.param(0), line.param(1)
        if self._is_me(nick) and "echo-message" in self._reg.caps:
            self._echoes += 1
            self._wire.fence.echoed()  # the server handled it: it reached the channel
            return
        if not nick or self._is_me(nick) or "!" not in (line.source or ""):
            return
        if text.startswith("\x01"):
            body = text.strip("\x01")
            if not body.upper().startswith("ACTION "):
                return  # CTCP requests are not answered
            text = body[len("ACTION ") :]
        if "account-tag" in self._reg.caps:
            self._accounts.set_account(nick, line.tags.get("account"))
        private = self._is_me(target)
        if private:
            room = nick
            self._private_rooms[self._fold(nick)] = None
            while len(self._private_rooms) > MAX_PRIVATE_ROOMS:
                del self._private_rooms[next(iter(self._private_rooms))]
        else:
            room = target.lstrip(self._reg.statusmsg) if self._reg.statusmsg else target
        tags = dict(line.tags)
        if line.param(1).startswith("\x01"):
            tags["ctcp"] = "ACTION"
        edit_of = next((line.tags[t] for t in EDIT_TAGS if t in line.tags), None)
        replayed = self._batches.get(line.tags.get("batch", ""), "") in REPLAY_BATCHES
        msg = Message(
            self.name, room, nick, text, self._identities(line), private, tags,
            edit_of=edit_of, replayed=replayed, to_nick=self._nick,
        )  # fmt: skip
        try:
            self._queue.put_nowait(msg)
        except asyncio.QueueFull:
            self._log.warning("dropping a line from %s: too many queued messages", nick)
