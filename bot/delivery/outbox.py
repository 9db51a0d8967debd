"""The outbox: every line the bot says, durable in the store, drained to chat under flood
control (the announcer, bot.delivery.announcer, words what is said unasked and queues it here).

Every line the bot sends (replies and unasked announcements) is written here first, so a
crash or a chat outage loses nothing: rows stay pending until an adapter accepted them.
A line carrying the same `key` as an unsent one is a newer state of the same thing (one
pipeline's stage 2 -> stage 3): it replaces that line and takes its place at the end of the
queue, so a backlog shows the latest state, in the order things happened; a final state is
never replaced. Different steps of one action (a deploy's start, diff, upgrade scripts,
"brings" and result) have different keys (`deploy:7#start`, ...: the part before `#` names
the action), so each is said, in order, even when a packed line lists failures first.
Every line is shaped once, here (`bot.core.text.chat_line`: at most one IRC message, its closing
step kept). On rate-limited networks a fresh announcement is held for `flood.coalesce`
seconds first while lines are queueing for its connection, so a burst spends its first lines
on states that are still current; a lone line on an idle connection goes at once. A line is planned only when its
connection can put it on the wire at once (`ready_in`: the adapter paces every line by the
one budget the server allows, see bot.chat.pacing), replies first; an announcement also
takes a token from its room's budget (`flood`, politeness), a reply does not (it was asked
for). When the store cannot write, a line goes straight to chat, unpersisted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from bot.chat.base import ChatAdapter
from bot.chat.flood import Pending, TokenBucket, plan_line, thing_of
from bot.config.model import FloodConfig
from bot.core.health import StoreHealth, is_store_failure
from bot.core.tasks import within
from bot.core.text import chat_line, line_budget
from bot.store.db import Row, Store, StoreClosed, StoreConn
from bot.store.leader import Leadership

log = logging.getLogger("deploybot.outbox")


@dataclass
class Speaker:
    """Whose command a task runs for: the adapter and room where its user reads the answer.
    `told` turns True once a line that user sees is queued (a reply, or an announcement in
    that room or on a one-stream connection), so the dispatcher does not say "working on
    it…" after news of the command's own progress."""

    adapter: str
    room: str
    told: bool = False


# set by the dispatcher in each command's task (and so in the tasks it starts)
speaker: ContextVar[Speaker | None] = ContextVar("speaker", default=None)


class Outbox:
    """Queue lines durably and deliver them through the chat adapters."""

    def __init__(
        self,
        store: Store,
        adapters: Sequence[ChatAdapter],
        flood: FloodConfig,
        clock: Callable[[], float] = time.monotonic,
        on_sent: Callable[[list[float]], None] | None = None,
        health: StoreHealth | None = None,
        default_room: str | None = None,
        leadership: Leadership | None = None,
        prefix: str = "!",
    ):
        self.store = store
        self.adapters = list(adapters)
        self.flood = flood
        self.prefix = prefix  # the command prefix: commands in lines are kept as typed
        self.clock = clock
        self.on_sent = on_sent
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        # replicas: only a leader whose lease is valid speaks, claims lines under its epoch,
        # and starts with empty budgets (the previous leader may just have spent the server's)
        self.leadership = leadership or Leadership()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._stopping = False
        self.health = health or StoreHealth()
        self.default_room = default_room  # takes lines for rooms no adapter serves (with a note)
        self._stuck_rooms: set[str] = set()  # rooms already reported as unserved
        self._unmarked: set[int] = set()  # sent, but the store could not mark them yet
        self._fresh: dict[int, float] = {}  # announcement id -> when queued (coalescing)
        self._last_sent: dict[str, float] = {}  # adapter -> when it last took a line

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
        Every line is shaped here, once (`chat_line`: at most one IRC message).
        """
        now = time.time()
        self._note_told(adapter, room)
        text = chat_line(text, room, self.prefix)
        short = chat_line(short, room, self.prefix) if short else short

        def write(conn: StoreConn) -> tuple[int | None, int | None]:
            created, replaced = now, None
            if key is not None:  # a newer state of the same thing: the unsent older one goes
                old = conn.execute(
                    "SELECT id, created_at FROM outbox WHERE room=? AND key=? AND sent_at IS NULL"
                    " AND final=0 ORDER BY id DESC LIMIT 1",
                    (room, key),
                ).fetchone()
                if old is not None:
                    replaced, created = int(old[0]), float(old[1] or now)
                    conn.execute("DELETE FROM outbox WHERE id=?", (replaced,))
            cur = conn.execute(
                "INSERT INTO outbox (adapter, room, text, short, key, final, priority, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (adapter, room, text, short, key, int(final), priority, created),
            )
            return cur.lastrowid, replaced

        try:
            new_id, replaced = await self.store.transaction(write)
        except StoreClosed:
            raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            self.health.failed(exc)
            await self._send_unpersisted(room, text, adapter, exc)
            return
        self.health.ok()
        queued = self._fresh.pop(replaced, None) if replaced is not None else None
        if new_id is not None and priority == 0 and self.flood.coalesce > 0:
            self._fresh[new_id] = self.clock() if queued is None else queued
        self._idle.clear()
        self._wake.set()

    def _note_told(self, adapter: str | None, room: str) -> None:
        """Mark the command this task runs for (`speaker`) as having told its user something,
        if a line for (`adapter`, `room`) shows where that user reads."""
        who = speaker.get()
        if who is None or who.told:
            return
        target = self.pick_adapter(adapter, room)
        if target is not None and target.name == who.adapter:
            who.told = room == who.room or target.one_stream

    async def _send_unpersisted(
        self, room: str, text: str, adapter: str | None, exc: BaseException
    ) -> None:
        """The store cannot write: say the line now, straight to chat (lost if chat is down)."""
        target = self.pick_adapter(adapter, room)
        if target is None or not target.connected:
            log.warning(
                "store cannot write (%s) and chat is down: a line for %s is lost", exc, room
            )
            return
        try:
            await target.send(room, text)
        except ConnectionError:
            log.warning("store cannot write (%s); a direct line to %s failed too", exc, room)
            return
        if self.on_sent:
            self.on_sent([0.0])

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
        if self._unmarked:
            await self._mark_sent(sorted(self._unmarked))
        rows = await self.store.fetchall(
            "SELECT id, adapter, room, text, short, key, priority, created_at FROM outbox"
            " WHERE sent_at IS NULL"
            " ORDER BY id LIMIT 2000"
        )
        rows = [r for r in rows if r["id"] not in self._unmarked]
        if not rows:
            return None
        by_target: dict[tuple[str, str], list[Pending]] = {}
        adapters: dict[str, ChatAdapter] = {}
        orphans: list[Row] = []
        queued_at = {r["id"]: r["created_at"] for r in rows}
        keys = {r["id"]: r["key"] for r in rows if r["key"] is not None}
        held: float | None = None  # seconds until the youngest held announcement may go
        now = self.clock()
        routed = [(r, self.pick_adapter(r["adapter"], r["room"])) for r in rows]
        waiting: dict[str, int] = {}  # adapter -> lines waiting for it
        for _, found in routed:
            if found is not None:
                waiting[found.name] = waiting.get(found.name, 0) + 1
        for r, found in routed:
            if found is None:
                orphans.append(r)
                continue
            queued = self._fresh.get(r["id"])
            young = 0.0 if queued is None else self.flood.coalesce - (now - queued)
            if young > 0 and self._busy(found, waiting[found.name], now):
                # hold a fresh announcement briefly: a burst's later states replace it
                held = young if held is None else min(held, young)
                continue
            adapters[found.name] = found
            by_target.setdefault((found.name, r["room"]), []).append(
                Pending(r["id"], r["text"], r["priority"], r["short"], thing_of(r["key"]))
            )
        next_wait: float | None = held
        if orphans and not await self._reroute(orphans):
            next_wait = 30.0  # nowhere to send them yet: they wait, and the error is logged

        def urgency(target: tuple[str, str]) -> tuple[int, int]:
            items = by_target[target]
            return (-max(p.priority for p in items), min(p.id for p in items))

        for adapter_name, room in sorted(by_target, key=urgency):  # replies first
            items = by_target[(adapter_name, room)]
            adapter = adapters[adapter_name]
            if not adapter.connected:
                next_wait = min(next_wait or 1.0, 1.0)
                continue
            limited = adapter.rate_limited
            if limited and (wire := adapter.ready_in()) > 0:  # the connection's own budget
                next_wait = wire if next_wait is None else min(next_wait, wire)
                continue
            replies = [p for p in items if p.priority > 0]
            bucket: TokenBucket | None = None
            if replies:  # asked for: not charged to the room's budget
                text, ids = plan_line(replies, line_budget(room))
            elif limited:
                bucket = self._buckets.get((adapter.name, room)) or self._new_bucket(
                    adapter.name, room
                )
                if not bucket.take(self.clock()):
                    wait = bucket.wait_time(self.clock())
                    next_wait = wait if next_wait is None else min(next_wait, wait)
                    continue
                text, ids = plan_line(items, line_budget(room))
            else:
                text, ids = items[0].text, [items[0].id]
            if not self.leadership.may_act() or not await self._claim(ids):
                return None  # fenced: not the leader (any more)
            try:  # the keys let a resend after a reconnect drop a superseded state
                said = {keys[i] for i in ids if i in keys}
                await adapter.send(room, text, keys=said, reply=bool(replies))
            except ConnectionError:
                if bucket is not None:
                    bucket.refund()
                next_wait = min(next_wait or 1.0, 1.0)
                continue
            self._last_sent[adapter.name] = self.clock()
            await self._mark_sent(ids, {p.id: p.text for p in items if p.id in set(ids)})
            if self.on_sent:  # each line's time in the queue, from when it was queued
                sent_at = time.time()
                self.on_sent([sent_at - float(queued_at[i] or sent_at) for i in ids])
            if len(ids) < len(items):
                next_wait = 0.0
        return next_wait if next_wait is not None else 0.0

    def _busy(self, adapter: ChatAdapter, waiting: int, now: float) -> bool:
        """Whether lines are actually queueing for `adapter`: only then is a fresh
        announcement held for newer states. A lone line on an idle connection (nothing else
        waiting, nothing sent within the window) goes at once, or as soon as the connection's
        budget has a token: a hold on top of that wait would only add to it."""
        if not adapter.rate_limited:
            return False
        recent = now - self._last_sent.get(adapter.name, float("-inf")) < self.flood.coalesce
        return waiting > 1 or recent

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
                    (fallback, chat_line(
                        f"{r['text']} (for {r['room']}: no chat connection serves it)", fallback,
                        self.prefix), r["id"]),
                )  # fmt: skip

        await self.store.transaction(move)
        return True

    def _new_bucket(self, adapter: str, room: str) -> TokenBucket:
        bucket = TokenBucket(self.flood.burst, self.flood.per_second, self.clock())
        if self.leadership.starts_empty:
            bucket.tokens = 0.0
        self._buckets[(adapter, room)] = bucket
        return bucket

    async def _claim(self, ids: list[int]) -> bool:
        """Claim unsent rows for this leader's epoch; False once a newer leader holds the
        lease (or another sent them). A crash between send and `_mark_sent` repeats at most
        this one line: one line is in flight at a time."""
        marks = ",".join("?" for _ in ids)
        fenced, params = self.leadership.not_deposed()
        claimed = await self.store.execute(
            f"UPDATE outbox SET claimed_epoch=? WHERE id IN ({marks}) AND sent_at IS NULL"  # noqa: S608
            f" AND {fenced}",
            (self.leadership.epoch, *ids, *params),
        )
        return claimed == len(ids)

    async def _mark_sent(self, ids: list[int], texts: dict[int, str] | None = None) -> None:
        """Mark lines sent; if the store cannot write, remember them so they are not sent
        again, and mark them when it can. With `texts` (what was sent, by id), a row whose
        text was replaced meanwhile (a newer state coalesced into it while the line was on
        its way) stays pending, so that newer state (a final) is sent too."""
        now = time.time()

        def mark(conn: StoreConn) -> None:
            if texts is None:
                marks = ",".join("?" for _ in ids)
                conn.execute(
                    f"UPDATE outbox SET sent_at=? WHERE id IN ({marks})",  # noqa: S608 - placeholders only
                    (now, *ids),
                )
                return
            conn.executemany(
                "UPDATE outbox SET sent_at=? WHERE id=? AND text=?",
                [(now, i, texts[i]) for i in ids],
            )

        try:
            # bookkeeping, as the event worker's marks: a mark lost to a power cut (never to a
            # crash of the process) says the line once more; no need to wait for the disk
            await self.store.transaction(mark, durable=False)
        except StoreClosed:
            raise
        except Exception as exc:
            if not is_store_failure(exc):
                raise
            self.health.failed(exc)
            self._unmarked.update(ids)
            return
        self.health.ok()
        self._unmarked.difference_update(ids)
        for sent in ids:
            self._fresh.pop(sent, None)

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
                    await within(self._wake.wait(), timeout=wait)
                except TimeoutError:
                    pass

    async def flush(self, timeout: float) -> bool:
        """Wait until everything deliverable was sent; False on timeout."""
        if await self.pending_count() == 0:
            return True
        self._wake.set()
        try:
            await within(self._idle.wait(), timeout=timeout)
            return True
        except TimeoutError:
            return False
