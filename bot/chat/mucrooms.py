"""Keeping the XMPP adapter in its MUC rooms: join, fall back to `<nick>_`, regain, retry forever.

slixmpp's `join_muc_wait` only sees error presences that carry the MUC `<x/>` element;
Prosody's nick-conflict error has none, so a taken nick looked like 20 s of silence and the
room was given up for good. Here one `RoomKeeper` per room and connection watches every
presence from its room itself (errors included), tries the nick, then `<nick>_`, retries any
failed join (conflict, members-only, banned, password, no answer) with backoff and logs the
reason each time, rejoins after a kick, and takes the configured nick back once it is free.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime

import slixmpp
from slixmpp import JID

from bot.core.tasks import within

log = logging.getLogger("bot.chat.xmpp")

SELF_PRESENCE = 110
NICK_CHANGED = 303
REGAIN_EVERY = 60.0  # seconds between attempts to take the configured nick back


def retry_delay(failures: int, first: float, cap: float) -> float:
    """Seconds before join retry number `failures` (1, 2, ...): doubling, jittered, capped."""
    ceiling = min(cap, first * 2 ** min(max(failures - 1, 0), 20))
    return ceiling * random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not crypto


def error_reason(pr: slixmpp.Presence) -> str:
    """A short reason from an error presence: `conflict`, `registration-required (text)`..."""
    error = pr["error"]
    condition = str(error["condition"] or "error")
    text = str(error["text"] or "").strip()
    return f"{condition} ({text})" if text else condition


class RoomKeeper:
    """Membership of one room over one XMPP connection; `run()` until cancelled."""

    def __init__(
        self, client: slixmpp.ClientXMPP, room: str, nick: str, *,
        timeout: float, retry: float, retry_max: float, regain_every: float = REGAIN_EVERY,
    ) -> None:  # fmt: skip
        self.client = client
        self.room = room
        self.wanted = nick
        self.nick: str | None = None  # our nick in the room while joined, else None
        self.last_error: str | None = None
        self._timeout = timeout
        self._retry, self._retry_max = retry, retry_max
        self._regain_every = regain_every
        self._answer: asyncio.Future[str | None] | None = None  # None: joined; str: refused
        self._asked: str | None = None  # the nick the pending join/nick change asked for
        self._left = asyncio.Event()
        self._holder_left = asyncio.Event()
        # after a cut: the room's history since then is asked for on the first join (else none)
        self.history_since: datetime | None = None

    # -- presences from the room (the adapter routes them here) ---------------------------

    def on_presence(self, pr: slixmpp.Presence) -> None:
        nick = pr["from"].resource
        kind = pr["type"]
        if kind == "error":
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(error_reason(pr))
            return
        codes = set(pr["muc"]["status_codes"]) if pr.get_plugin("muc", check=True) else set()
        own = self._is_self(pr, codes)
        if kind == "unavailable":
            if own and NICK_CHANGED not in codes and nick == self.nick:
                self.nick = None
                self.last_error = (
                    "left the room ("
                    + ("banned" if 301 in codes else "kicked" if 307 in codes else "removed")
                    + ")"
                )
                self._left.set()
            elif nick == self.wanted and self.nick not in (None, self.wanted):
                self._holder_left.set()  # whoever held our nick is gone: take it back
            return
        if own and nick and (SELF_PRESENCE in codes or nick == self._asked):
            self.nick = nick
            self._update_plugin_nick(nick)
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(None)

    def _is_self(self, pr: slixmpp.Presence, codes: set[int]) -> bool:
        """Our own occupant: status 110, else our full JID on the item, else our nick (a
        ghost of an earlier connection under the same nick shows another JID)."""
        if SELF_PRESENCE in codes:
            return True
        real = pr["muc"]["jid"] if pr.get_plugin("muc", check=True) else None
        if real:
            return str(real) == str(self.client.boundjid.full)
        return bool(pr["from"].resource) and pr["from"].resource in (self.nick, self._asked)

    # -- the loop -----------------------------------------------------------------------

    async def run(self) -> None:
        failures = 0
        while True:
            reason = await self._join()
            if reason is None:
                failures = 0
                self.last_error = None
                log.info("xmpp: joined %s as %s", self.room, self.nick)
                await self._stay()
                reason = self.last_error or "left the room"
            failures += 1
            self.last_error = reason
            delay = retry_delay(failures, self._retry, self._retry_max)
            log.warning("xmpp: not in %s: %s; retrying in %.0fs", self.room, reason, delay)
            await asyncio.sleep(delay)

    async def _join(self) -> str | None:
        """Join under the configured nick, else `<nick>_`; None when in, else the reason."""
        muc = self.client.plugin["xep_0045"]
        muc.rooms[None][JID(self.room)] = {}  # track occupants (real JIDs) of this room
        reasons = []
        for nick in (self.wanted, f"{self.wanted}_"):
            muc.our_nicks[None][JID(self.room)] = nick
            since = self.history_since
            stanza = muc.make_join_stanza(
                JID(self.room), nick, maxstanzas=None if since else 0, since=since
            )
            reason = await self._ask(nick, stanza)
            if reason is None:
                self.history_since = None  # read once
                return None
            reasons.append(f"{nick}: {reason}")
            if not reason.startswith("conflict"):
                break  # only a taken nick is worth another nick
        return "; ".join(reasons)

    async def _ask(self, nick: str, stanza: slixmpp.Presence) -> str | None:
        loop = asyncio.get_running_loop()
        self._answer, self._asked = loop.create_future(), nick
        try:
            stanza.send()
            return await within(self._answer, timeout=self._timeout)
        except TimeoutError:
            return f"no answer in {self._timeout:.0f}s"
        finally:
            self._answer, self._asked = None, None

    async def _stay(self) -> None:
        """Until we leave the room; meanwhile take the configured nick back when it is free."""
        self._left.clear()
        while not self._left.is_set():
            self._holder_left.clear()
            waits = {asyncio.ensure_future(self._left.wait())}
            if self.nick != self.wanted:
                waits.add(asyncio.ensure_future(self._holder_left.wait()))
            try:
                await asyncio.wait(
                    waits,
                    timeout=self._regain_every if self.nick != self.wanted else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                for w in waits:
                    w.cancel()
            if not self._left.is_set() and self.nick not in (None, self.wanted):
                await self._regain()

    async def _regain(self) -> None:
        target = JID(self.room)
        target.resource = self.wanted
        stanza = self.client.make_presence(pto=target)
        reason = await self._ask(self.wanted, stanza)
        if reason is None:
            log.info("xmpp: regained nick %s in %s", self.wanted, self.room)
        else:
            log.info("xmpp: nick %s in %s still taken: %s", self.wanted, self.room, reason)

    def _update_plugin_nick(self, nick: str) -> None:
        self.client.plugin["xep_0045"].our_nicks[None][JID(self.room)] = nick
