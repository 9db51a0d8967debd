"""The announcer: a durable outbox in the store, drained to chat under flood control.

Every line the bot sends (replies and unasked announcements) is written here first, so a
crash or a chat outage loses nothing: rows stay pending until an adapter accepted them.
Updates carrying the same `key` (one pipeline, one deploy) replace the still-unsent text,
so a backlog shows the latest state; a final state is never replaced.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from bot.chat.base import ChatAdapter
from bot.chat.flood import Pending, TokenBucket, plan_line
from bot.core.config import FloodConfig
from bot.core.store import Row, Store, StoreConn

log = logging.getLogger("deploybot.outbox")


class Outbox:
    """Queue lines durably and deliver them through the chat adapters."""

    def __init__(
        self,
        store: Store,
        adapters: Sequence[ChatAdapter],
        flood: FloodConfig,
        clock: Callable[[], float] = time.monotonic,
        on_sent: Callable[[list[float]], None] | None = None,
        default_room: str | None = None,
        may_send: Callable[[], bool] = lambda: True,
    ):
        """`default_room` takes the lines for rooms no adapter serves (with a note)."""
        self.store = store
        self.adapters = list(adapters)
        self.flood = flood
        self.clock = clock
        self.on_sent = on_sent
        self.default_room = default_room
        self._stuck_rooms: set[str] = set()  # rooms already reported as unserved
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        # replicas: only a leader whose lease is valid speaks, and it starts with an empty
        # budget (the previous leader may just have spent the server's)
        self.may_send = may_send
        self.start_empty = False
        self.epoch: Callable[[], int] = lambda: 0  # the leadership epoch (0: single instance)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False

    async def enqueue(
        self,
        room: str,
        text: str,
        *,
        key: str | None = None,
        final: bool = False,
        adapter: str | None = None,
        priority: int = 0,
        short: str | None = None,
    ) -> None:
        """Store one line for `room`; coalesce with an unsent, non-final line of the same key.

        `short` is the form used when the line is packed with others into a summary line.
        """
        now = time.time()

        def write(conn: StoreConn) -> None:
            if key is not None:
                cur = conn.execute(
                    "UPDATE outbox SET text=?, short=?, final=? WHERE id = (SELECT id FROM outbox"
                    " WHERE room=? AND key=? AND sent_at IS NULL AND final=0"
                    " ORDER BY id DESC LIMIT 1)",
                    (text, short, int(final), room, key),
                )
                if cur.rowcount:
                    return
            conn.execute(
                "INSERT INTO outbox (adapter, room, text, short, key, final, priority, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (adapter, room, text, short, key, int(final), priority, now),
            )

        await self.store.transaction(write)
        self._idle.clear()
        self._wake.set()

    def pick_adapter(self, adapter: str | None, room: str) -> ChatAdapter | None:
        if adapter is not None:
            return next((a for a in self.adapters if a.name == adapter), None)
        for a in self.adapters:
            if a.owns(room):
                return a
        return next((a for a in self.adapters if a.name == "console"), None)

    async def pending_count(self) -> int:
        row = await self.store.fetchone("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        return int(row[0]) if row else 0

    async def drain_once(self) -> float | None:
        """Send at most one line per room; return seconds until more can go (None: idle)."""
        rows = await self.store.fetchall(
            "SELECT id, adapter, room, text, short, priority, created_at FROM outbox"
            " WHERE sent_at IS NULL"
            " ORDER BY id LIMIT 2000"
        )
        if not rows:
            return None
        by_target: dict[tuple[str, str], list[Pending]] = {}
        adapters: dict[str, ChatAdapter] = {}
        orphans: list[Row] = []
        queued_at = {r["id"]: r["created_at"] for r in rows}
        for r in rows:
            found = self.pick_adapter(r["adapter"], r["room"])
            if found is None:
                orphans.append(r)
                continue
            adapters[found.name] = found
            by_target.setdefault((found.name, r["room"]), []).append(
                Pending(r["id"], r["text"], r["priority"], r["short"])
            )
        next_wait: float | None = None
        if orphans and not await self._reroute(orphans):
            next_wait = 30.0  # nowhere to send them yet: they wait, and the error is logged
        for (adapter_name, room), items in by_target.items():
            adapter = adapters[adapter_name]
            if not adapter.connected:
                next_wait = min(next_wait or 1.0, 1.0)
                continue
            limited = adapter.rate_limited
            bucket = self._buckets.get((adapter.name, room)) or self._new_bucket(adapter.name, room)
            if limited and not bucket.take(self.clock()):
                wait = bucket.wait_time(self.clock())
                next_wait = wait if next_wait is None else min(next_wait, wait)
                continue
            text, ids = plan_line(items) if limited else (items[0].text, [items[0].id])
            if not self.may_send() or not await self._claim(ids):
                return None  # fenced: not the leader (any more)
            try:
                await adapter.send(room, text)
            except ConnectionError:
                bucket.refund()
                next_wait = min(next_wait or 1.0, 1.0)
                continue
            await self._mark_sent(ids)
            if self.on_sent:  # each line's time in the queue, from when it was queued
                now = time.time()
                self.on_sent([now - float(queued_at[i] or now) for i in ids])
            if len(ids) < len(items):
                next_wait = 0.0
        return next_wait if next_wait is not None else 0.0

    async def _reroute(self, rows: list[Row]) -> bool:
        """Move lines for unserved rooms to the default room, noting where they were for.

        False when the default room is not served either: the lines stay queued.
        """
        fallback = self.default_room
        if fallback is None or self.pick_adapter(None, fallback) is None:
            for room in {r["room"] for r in rows} - self._stuck_rooms:
                self._stuck_rooms.add(room)
                log.error(
                    "no chat connection serves %s nor the default room %s; its lines stay queued",
                    room, fallback,
                )  # fmt: skip
            return False
        for room in {r["room"] for r in rows} - self._stuck_rooms:
            self._stuck_rooms.add(room)
            log.warning("no chat connection serves %s; its lines go to %s", room, fallback)

        def move(conn: StoreConn) -> None:
            for r in rows:
                conn.execute(
                    "UPDATE outbox SET room=?, adapter=NULL, text=?, short=NULL WHERE id=?",
                    (fallback, f"{r['text']} (for {r['room']}: no chat connection serves it)",
                     r["id"]),
                )  # fmt: skip

        await self.store.transaction(move)
        return True

    def _new_bucket(self, adapter: str, room: str) -> TokenBucket:
        bucket = TokenBucket(self.flood.burst, self.flood.per_second, self.clock())
        if self.start_empty:
            bucket.tokens = 0.0
        self._buckets[(adapter, room)] = bucket
        return bucket

    async def _claim(self, ids: list[int]) -> bool:
        """Claim unsent rows for this leader's epoch; False once a newer leader holds the
        lease (or another sent them). A crash between send and `_mark_sent` repeats at most
        this one line: one line is in flight at a time."""
        marks = ",".join("?" for _ in ids)
        epoch = self.epoch()
        claimed = await self.store.execute(
            f"UPDATE outbox SET claimed_epoch=? WHERE id IN ({marks}) AND sent_at IS NULL"  # noqa: S608
            " AND NOT EXISTS (SELECT 1 FROM leader_lease WHERE epoch > ?)",
            (epoch, *ids, epoch),
        )
        return claimed == len(ids)

    async def _mark_sent(self, ids: list[int]) -> None:
        marks = ",".join("?" for _ in ids)
        await self.store.execute(
            f"UPDATE outbox SET sent_at=? WHERE id IN ({marks})",  # noqa: S608 - placeholders only
            (time.time(), *ids),
        )

    async def run(self) -> None:
        """Deliver forever (owned by the app's supervisor)."""
        while not self._stopping:
            wait = await self.drain_once()
            if wait is None:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if wait > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass

    async def flush(self, timeout: float) -> bool:
        """Wait until everything deliverable was sent; False on timeout."""
        if await self.pending_count() == 0:
            return True
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout)
            return True
        except TimeoutError:
            return False
