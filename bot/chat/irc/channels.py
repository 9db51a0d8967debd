"""Which configured IRC channels the bot is in, and when to try joining the others again.

Sans-I/O (the adapter writes the JOINs): a channel that refuses us (invite-only, keyed,
banned, full, registered-only), a JOIN the server never answers, a kick or a part is
retried with doubling, jittered backoff, and the reason is kept for the log. Nothing is
ever given up, so the bot cannot silently stay out of a room.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

JOIN_ERRORS = {
    "403": "no such channel",
    "405": "joined too many channels",
    "471": "channel is full (+l)",
    "473": "invite only (+i)",
    "474": "banned (+b)",
    "475": "wrong or missing channel key (+k)",
    "477": "needs a registered nick",
    "489": "needs a secure connection",
}


@dataclass
class _Channel:
    name: str
    joined: bool = False
    asked_at: float | None = None  # a JOIN is out and unanswered since then
    retry_at: float = 0.0
    failures: int = 0
    reason: str | None = None


class ChannelKeeper:
    """Membership of the configured channels over one connection (`fold` casemaps names)."""

    def __init__(
        self, channels: list[str], fold: Callable[[str], str], *,
        retry: float = 5.0, retry_max: float = 60.0, answer_within: float = 30.0,
    ) -> None:  # fmt: skip
        self._fold = fold
        self._channels = {fold(c): _Channel(c) for c in channels}
        self._retry, self._retry_max, self._answer_within = retry, retry_max, answer_within

    def configured(self, name: str) -> bool:
        return self._fold(name) in self._channels

    def is_joined(self, name: str) -> bool:
        chan = self._channels.get(self._fold(name))
        return chan is not None and chan.joined

    def states(self) -> dict[str, bool]:
        return {c.name: c.joined for c in self._channels.values()}

    def due(self, now: float) -> list[str]:
        """Channels to JOIN now (never asked, retry time reached, or the last JOIN unanswered)."""
        out = []
        for chan in self._channels.values():
            if chan.joined:
                continue
            if chan.asked_at is not None:
                if now - chan.asked_at < self._answer_within:
                    continue
                self._failed(chan, f"no answer to JOIN in {self._answer_within:.0f}s", now)
            if now >= chan.retry_at:
                chan.asked_at = now
                out.append(chan.name)
        return out

    def joined(self, name: str) -> None:
        chan = self._channels.get(self._fold(name))
        if chan is not None:
            chan.joined, chan.asked_at, chan.failures, chan.reason = True, None, 0, None

    def refused(self, name: str, numeric: str, text: str, now: float) -> float | None:
        """A JOIN error numeric for `name`; the seconds until the retry (None: not ours)."""
        chan = self._channels.get(self._fold(name))
        if chan is None:
            return None
        reason = JOIN_ERRORS.get(numeric, numeric)
        return self._failed(chan, f"{reason}: {text}" if text else reason, now)

    def left(self, name: str, reason: str, now: float) -> float | None:
        """We were kicked or parted; the seconds until the rejoin (None: not configured)."""
        chan = self._channels.get(self._fold(name))
        if chan is None:
            return None
        chan.joined = False
        return self._failed(chan, reason, now)

    def reason(self, name: str) -> str | None:
        chan = self._channels.get(self._fold(name))
        return chan.reason if chan is not None else None

    def _failed(self, chan: _Channel, reason: str, now: float) -> float:
        chan.failures += 1
        chan.asked_at, chan.reason = None, reason
        ceiling = min(self._retry_max, self._retry * 2 ** min(chan.failures - 1, 20))
        delay = ceiling * random.uniform(0.75, 1.0)  # noqa: S311 - jitter, not crypto
        chan.retry_at = now + delay
        return delay
