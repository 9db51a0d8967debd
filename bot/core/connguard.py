"""Bounds on the HTTP server's connections, in front of aiohttp's own protocol.

aiohttp reads request headers for as long as a client cares to send them, and accepts
connections until the process runs out of file descriptors; a few thousand half-sent
requests then starve `/healthz` and the webhooks. `GuardedProtocol` wraps each aiohttp
connection. At `max_connections`, a new connection takes the place of the oldest one still
sending its request head (so half-sent requests cannot lock out `/healthz`); when every
slot is serving a real request, it gets 503 at once. A connection that has not sent a
complete request head within `header_timeout` seconds is closed. Body read
timeouts are the routes' business (the webhook route reads under `body_timeout`).
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("deploybot.http")

BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 22\r\nConnection: close\r\n\r\ntoo many connections\r\n"
)


def connection_cap(wanted: int) -> int:
    """`wanted`, but at most half the process's file descriptor limit (the store, chat,
    subprocesses and logs need the rest)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    return max(8, min(wanted, soft // 2))


class Guard:
    """Shared by all connections of one server: the count and the limits."""

    def __init__(self, max_connections: int, header_timeout: float) -> None:
        self.max_connections = connection_cap(max_connections)
        self.header_timeout = header_timeout
        self.open = 0
        self.refused = 0
        self.timed_out = 0
        self.evicted = 0
        self.heads: dict[GuardedProtocol, None] = {}  # still sending the head, oldest first
        self.last_data = float("-inf")  # when bytes last came on any connection (loop clock)

    def make_room(self) -> bool:
        """True if a new connection may be admitted (evicting the oldest slow head)."""
        if self.open < self.max_connections:
            return True
        oldest = next(iter(self.heads), None)
        if oldest is None:
            return False
        self.evicted += 1
        oldest.drop()
        return True

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: GuardedProtocol(inner, self)


class GuardedProtocol(asyncio.Protocol):
    """Forwards to aiohttp's protocol once the connection is admitted."""

    def __init__(self, make_inner: Callable[[], asyncio.Protocol], guard: Guard) -> None:
        self._make_inner = make_inner
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tail = b""  # the last bytes seen, to find the end of the head across chunks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        if not self._guard.make_room():
            self._guard.refused += 1
            transport.write(BUSY)
            transport.close()
            return
        self._guard.open += 1
        self._guard.heads[self] = None
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.header_timeout, self._head_too_slow)
        self._inner = self._make_inner()
        self._inner.connection_made(transport)

    def _head_too_slow(self) -> None:
        self._guard.timed_out += 1
        self.drop()

    def drop(self) -> None:
        """Close now; the slot is free at once (connection_lost comes later)."""
        self._head_done()
        if self._inner is not None:
            self._guard.open -= 1
            inner, self._inner = self._inner, None
            if self._transport is not None:
                self._transport.abort()
            inner.connection_lost(None)

    def _head_done(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._guard.heads.pop(self, None)

    def data_received(self, data: bytes) -> None:
        if self._inner is None:
            return
        self._guard.last_data = time.monotonic()
        if self._timer is not None:
            seen = self._tail + data
            if b"\r\n\r\n" in seen or b"\n\n" in seen:
                self._head_done()
            self._tail = seen[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._head_done()
        if self._inner is not None:
            self._guard.open -= 1
            self._inner.connection_lost(exc)
            self._inner = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def __getattr__(self, name: str) -> Any:  # anything else aiohttp may ask its protocol
        if self._inner is None:
            raise AttributeError(name)
        return getattr(self._inner, name)
