"""The sending side of the IRC adapter: every line paced by the connection's one budget, and
the delivery fence that makes the bot's lines reach the channel at least once.

Split out of bot.chat.irc.adapter (which owns the socket, registration, channels and accounts) because
the two halves of delivery belong together: the pacer (bot.chat.pacing) says when a line may
go, the fence (bot.chat.irc.fence) remembers what went and was not yet proven handled, and this
class decides when a fence PING costs nothing a waiting line needed (when the next token is
free and no line asked for it), and sends the unproven lines again after a reconnect.

After a reconnect a reply goes first: ahead of the lines sent again, which are announcements
said earlier. The lines sent again wait until the dead connection had its last word
(`settling`: its server, if only frozen, still answers on the old socket and so proves which
lines it handled), at most for as long as the adapter lets it linger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from bot.chat.irc.fence import Fence, repeated, target_of
from bot.chat.irc.proto import format_line
from bot.chat.pacing import WirePacer
from bot.core.tasks import within

GRACE = 0.02  # after the next token is free, before a fence PING may take it
LATE = 0.3  # how late a line that asked for the wire may be before a fence PING goes first


class WireSender:
    """Paced, fenced writes for one adapter. `write(line, paced)` puts a line on the socket
    (raising ConnectionError when there is none); `deliverable(target)` says whether a line
    for target may go now; `prefix_len()` is the bot's own prefix length as others see it."""

    def __init__(
        self,
        pacer: WirePacer,
        write: Callable[[str, bool], None],
        deliverable: Callable[[str], bool],
        prefix_len: Callable[[], int],
    ) -> None:
        self.pacer = pacer
        self.fence = Fence()  # lines not yet proven handled by the server
        self.lock = asyncio.Lock()
        self._write, self._deliverable, self._prefix_len = write, deliverable, prefix_len
        self.log = logging.getLogger("deploybot.irc")  # the adapter's own
        self.writer: asyncio.StreamWriter | None = None  # the socket last written to
        self._timer: asyncio.TimerHandle | None = None
        self._line_waits = float("-inf")  # when a line that asked for the wire may go
        self._resender: asyncio.Task[None] | None = None
        self._connection = 0  # counts lost connections: a wait never crosses into the next
        self._said = 0  # counts texts sent (the parts of a split text share a number)
        self.settling: asyncio.Future[None] | None = None  # the dead connection's last word

    def ready_in(self) -> float:
        now = asyncio.get_running_loop().time()
        if (wait := self.pacer.wait_time(now)) > 0:
            self._line_waits = now + wait  # a line waits for the wire: no fence PING before
        return wait

    async def send(
        self, lines: list[str], keys: frozenset[str] = frozenset(), reply: bool = False
    ) -> None:
        """Write the lines of one text; `keys` are the outbox keys of the states it says. A
        reply goes ahead of lines waiting to be sent again (announcements said earlier)."""
        if not reply:
            await self._settled()
        async with self.lock:
            if not reply:
                await self._resend_due()  # lines a lost connection took go first
            self._said += 1
            for line in lines:  # every part of a split line is paced like a line of its own
                await self._paced_write(line)
                self._dropped(self.fence.wrote(line, keys, self._said))
            if (writer := self.writer) is not None:
                with contextlib.suppress(OSError, TimeoutError):
                    await within(writer.drain(), timeout=10)
            self._arm()

    async def _paced_write(self, line: str) -> None:
        wait, connection = self.pacer.wait_time(asyncio.get_running_loop().time()), self._connection
        if wait > 0:
            await asyncio.sleep(wait + 0.001)  # pacing, not waiting for an event
        if connection != self._connection or not self._deliverable(target_of(line)):
            raise ConnectionError("IRC connection lost while sending")
        self.pacer.take(asyncio.get_running_loop().time())
        self._write(line, True)
        self._line_waits = float("-inf")

    def _dropped(self, lines: list[str]) -> None:
        for line in lines:
            self.log.warning("too many unconfirmed lines; forgetting: %s", line[:80])

    # ---- the fence PING -------------------------------------------------------------------

    def _arm(self) -> None:
        """Check for a fence PING when the next token is free (a waiting line takes it)."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        at = max(loop.time() + self.pacer.wait_time(loop.time()), self._line_waits + LATE)
        self._timer = loop.call_at(at + GRACE, self._check)

    def _check(self) -> None:
        self._timer = None
        if not self._deliverable("") or self.lock.locked() or not self.fence.ping_due():
            return  # a send under way arms the check again when it ends
        now = asyncio.get_running_loop().time()
        if self.pacer.wait_time(now) > 0 or now < self._line_waits + LATE:
            self._arm()  # a line asked for the wire and is about to take it
            return
        with contextlib.suppress(ConnectionError):  # charged like any control line
            self._write(format_line("PING", self.fence.ping(now)), False)

    def keepalive(self, now: float) -> None:
        """The periodic keepalive PING is a fence PING too (unless one is out already)."""
        if self.fence.ping_sent_at is None:
            self._write(format_line("PING", self.fence.ping(now)), False)

    def check_pong(self, now: float, limit: float) -> None:
        """A fence PING unanswered for `limit` seconds: the connection is dead."""
        sent = self.fence.ping_sent_at
        if sent is not None and now - sent >= limit:
            raise ConnectionError(f"PING unanswered for {now - sent:.0f}s")

    def pong(self, token: str) -> None:
        if self.fence.pong(token) and self.fence.ping_due():
            self._arm()  # lines written while the PING was out

    # ---- after a reconnect ----------------------------------------------------------------

    def lost(self) -> None:
        """The connection is gone: its unconfirmed lines wait to be sent again."""
        self._connection += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if count := self.fence.lost():
            self.log.warning("%d lines not confirmed by the server; sending them again", count)

    def resend_soon(self) -> None:
        """A target may have become deliverable (registered, joined): send its lines again."""
        if self.fence.to_resend and (self._resender is None or self._resender.done()):
            self._resender = asyncio.create_task(self._resend_now(), name="irc-resend")

    async def _resend_now(self) -> None:
        await self._settled()
        with contextlib.suppress(ConnectionError):
            async with self.lock:
                await self._resend_due()
                self._arm()

    async def _settled(self) -> None:
        """Wait (outside the lock, so replies pass) for the dead connection's last word."""
        if self.fence.to_resend and (settling := self.settling) is not None:
            await asyncio.wait({settling})  # bounded: the adapter ends a lingering socket

    async def _resend_due(self) -> None:
        while entry := self.fence.next_resend(self._deliverable):
            try:
                await self._paced_write(repeated(entry.line, self._prefix_len()))
            except ConnectionError:
                self.fence.put_back(entry)
                raise
            self._dropped(self.fence.wrote_again(entry))

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._resender is not None:
            self._resender.cancel()
            await asyncio.gather(self._resender, return_exceptions=True)
