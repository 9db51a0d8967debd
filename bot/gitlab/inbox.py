"""Route stored webhook events to their handlers, after the HTTP answer went out.

The webhook route only verifies and persists; this worker takes the
pending rows from the store in arrival order into lanes (one per pipeline commit, merge
request or project: `order_key`), runs lanes concurrently and each lane in order, parses each with the pure
`bot.gitlab.events.parse_event`, dispatches the typed event through a `Router` (by kind,
and optionally one attribute such as a merge request's `action`, like gidgethub's router),
and marks the row processed, malformed or failed. Rows still pending at start-up (the
process died between the 200 and the processing) are handled first, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from bot.core.metrics import Metrics
from bot.core.tasks import TaskSet, wait_until
from bot.gitlab.events import Event, parse_event
from bot.gitlab.fields import MalformedEvent
from bot.store.db import Store, StoreConn
from bot.store.sal import current_action

log = logging.getLogger("deploybot.events")

Handler = Callable[[Any], Awaitable[None]]

INSERT_CHUNK = 200  # deliveries per INSERT statement (4 parameters each; SQLite allows 32766)

# GitLab's X-Gitlab-Event header -> the short kind used in metrics and by the router
HOOK_KINDS = {
    "Pipeline Hook": "pipeline",
    "Job Hook": "job",
    "Push Hook": "push",
    "Tag Push Hook": "tag_push",
    "Merge Request Hook": "merge_request",
    "Deployment Hook": "deployment",
}
OBJECT_KINDS = {"build": "job"}  # object_kind values that differ from the short kind


def event_kind(header: str | None, body: Any) -> str | None:
    """The short kind of a delivery ("pipeline", ...), or None for kinds the bot ignores."""
    kind = HOOK_KINDS.get(header or "")
    if kind is None and isinstance(body, dict):
        obj = body.get("object_kind")
        if isinstance(obj, str):
            obj = OBJECT_KINDS.get(obj, obj)
            kind = obj if obj in HOOK_KINDS.values() else None
    return kind


class Router:
    """Handlers subscribe to an event kind, optionally narrowed by its `action`."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str | None], list[Handler]] = {}

    def register(self, kind: str, handler: Handler, action: str | None = None) -> None:
        self._handlers.setdefault((kind, action), []).append(handler)

    def handlers_for(self, event: Event) -> list[Handler]:
        found = list(self._handlers.get((event.kind, None), []))
        action = getattr(event, "action", None)
        if isinstance(action, str):
            found += self._handlers.get((event.kind, action), [])
        return found

    async def dispatch(self, event: Event) -> int:
        """Run every matching handler in registration order; return how many ran."""
        handlers = self.handlers_for(event)
        for handler in handlers:
            await handler(event)
        return len(handlers)


def order_key(header: str, raw: bytes) -> str:
    """Which events must be handled in arrival order: those of one pipeline commit (its
    branch and tag pipelines share a release), one merge request, else one project. Events of
    different keys run concurrently. Unparseable bodies share one lane (they only fail)."""
    return _order_key(header, _parsed(raw))


def _parsed(raw: bytes) -> Any:
    """The body as JSON, or the exception that refused it (the lane and the handler share one
    parse of each event)."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        return exc


def _order_key(header: str, body: Any) -> str:
    if not isinstance(body, dict):
        return "malformed"
    project = body.get("project")
    pid = project.get("id") if isinstance(project, dict) else body.get("project_id")
    attrs = body.get("object_attributes")
    attrs = attrs if isinstance(attrs, dict) else {}
    kind = event_kind(header, body)
    if kind == "pipeline":
        return f"pipeline:{pid}:{attrs.get('sha') or attrs.get('id')}"
    if kind == "merge_request":
        return f"mr:{pid}:{attrs.get('iid')}"
    return f"project:{pid}"


class EventWorker:
    """Processes stored events concurrently (at most `concurrency` lanes at once), each lane
    (`order_key`) in arrival order, so one slow event holds up only its own lane."""

    def __init__(
        self,
        store: Store,
        router: Router,
        metrics: Metrics,
        *,
        keep_seconds: float = 7 * 86400,
        prune_every: float = 3600,
        concurrency: int = 16,
        max_queued: int = 1000,
    ) -> None:
        self.store = store
        self.router = router
        self.metrics = metrics
        self.keep_seconds = keep_seconds
        self.prune_every = prune_every
        self.max_queued = max_queued
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._last_prune = 0.0
        self._high = 0  # the highest event id taken from the store
        self._lanes: dict[str, deque[tuple[int, str, Any]]] = {}  # (id, header, parsed body)
        self._marks: list[tuple[str, str | None, int, asyncio.Future[None]]] = []
        self._marker: asyncio.Task[None] | None = None
        self._queued = 0
        self._tasks = TaskSet()  # one per busy lane
        # replicas: another replica may store events, so look again this often (seconds)
        self.poll_every: float | None = None

    def wake(self) -> None:
        """Called by the webhook route after it stored an event."""
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                taken = await self._take()
                await self._prune()
                if taken or self._wake.is_set():
                    continue
                if not self._lanes:
                    self._idle.set()
                # replicas: another replica may have stored events; look again after a while
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_every)
        finally:
            self._tasks.cancel()
            self._lanes.clear()
            self._queued = 0
            self._high = 0  # what was not finished is still pending in the store

    async def wait_idle(self, timeout: float) -> bool:
        """Until everything stored so far was processed; False on timeout."""
        return await wait_until(self._idle, timeout)

    async def _take(self, limit: int = 200) -> int:
        """Queue pending events not taken yet into their lanes; start idle lanes."""
        room = min(limit, self.max_queued - self._queued)
        if room <= 0:
            return 0
        rows = await self.store.fetchall(
            "SELECT id, kind, body FROM events WHERE status='pending' AND id > ?"
            " ORDER BY id LIMIT ?",
            (self._high, room),
        )
        busy = {item[0] for lane in self._lanes.values() for item in lane}
        for row in rows:
            self._high = max(self._high, row["id"])
            if row["id"] in busy:  # taken again after a lane gave back (store failure)
                continue
            body = _parsed(bytes(row["body"]))
            key = _order_key(row["kind"], body)
            lane = self._lanes.get(key)
            self._queued += 1
            if lane is not None:
                lane.append((row["id"], row["kind"], body))
                continue
            self._lanes[key] = deque([(row["id"], row["kind"], body)])
            self._tasks.spawn(self._drain(key), name=f"events-{key}")
        return len(rows)

    async def _drain(self, key: str) -> None:
        lane = self._lanes[key]
        try:
            async with self._slots:
                while lane:
                    event_id, header, body = lane[0]
                    try:
                        await self._handle(event_id, header, body)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # the store failed: retry this lane later
                        log.warning("webhook event %d stays pending: %s", event_id, exc)
                        self._queued -= len(lane)
                        self._high = min(self._high, lane[0][0] - 1)
                        lane.clear()
                        await asyncio.sleep(1.0)  # back off before the store is asked again
                        break
                    lane.popleft()
                    self._queued -= 1
        finally:
            if self._lanes.get(key) is lane and not lane:
                del self._lanes[key]
            self._wake.set()  # room for more, or idle now

    async def _handle(self, event_id: int, header: str, body: Any) -> None:
        status, error = await self._process(event_id, header, body)
        await self._mark(status, error, event_id)

    async def _mark(self, status: str, error: str | None, event_id: int) -> None:
        """Record how an event ended, committed before this returns; lanes finishing together
        share one transaction (group commit, as the webhook route does for new events)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append((status, error, event_id, done))
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._write_marks(), name="events-mark")
        await done

    async def _write_marks(self) -> None:
        while self._marks:
            marks, self._marks = self._marks, []
            try:
                await self.store.transaction(functools.partial(mark_events, [m[:3] for m in marks]))
            except Exception as exc:  # every lane of this batch retries its event later
                for *_, done in marks:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for *_, done in marks:
                if not done.done():
                    done.set_result(None)

    async def process_pending(self, limit: int = 100) -> int:
        """Handle up to `limit` pending events one by one, oldest first (no lanes); return
        how many. For tools and tests that drive the worker by hand."""
        rows = await self.store.fetchall(
            "SELECT id, kind, body FROM events WHERE status='pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        for row in rows:
            await self._handle(row["id"], row["kind"], _parsed(bytes(row["body"])))
        return len(rows)

    async def oldest_pending_age(self) -> float:
        """Seconds the oldest unprocessed event has waited (0 when none)."""
        row = await self.store.fetchone(
            "SELECT min(received_at) FROM events WHERE status='pending'"
        )
        oldest = row[0] if row else None
        return max(0.0, time.time() - float(oldest)) if oldest is not None else 0.0

    async def _process(self, event_id: int, header: str, body: Any) -> tuple[str, str | None]:
        kind = "unknown"
        try:
            if isinstance(body, Exception):
                raise body
            kind = event_kind(header, body) or "unknown"
            event = parse_event(header, body)
        except (MalformedEvent, ValueError, RecursionError) as exc:
            log.warning("webhook event %d (%s) is malformed: %s", event_id, header, exc)
            self.metrics.events_processed.labels(kind, "malformed").inc()
            return "malformed", str(exc)[:500]
        if event is None:
            self.metrics.events_processed.labels(kind, "ignored").inc()
            return "ignored", None
        current_action.set(f"webhook-{event_id}")  # what it sets off shares one SAL action id
        try:
            handled = await self.router.dispatch(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("handling webhook event %d (%s) failed", event_id, header)
            self.metrics.events_processed.labels(kind, "failed").inc()
            return "failed", f"{type(exc).__name__}: {exc}"[:500]
        self.metrics.events_processed.labels(kind, "handled" if handled else "ignored").inc()
        return "processed", None

    async def _prune(self) -> None:
        """Forget finished events after `keep_seconds` (their dedupe keys with them)."""
        now = time.time()
        if now - self._last_prune < self.prune_every:
            return
        self._last_prune = now
        await self.store.execute(
            "DELETE FROM events WHERE status != 'pending' AND received_at < ?",
            (now - self.keep_seconds,),
        )

    async def pending_count(self) -> int:
        row = await self.store.fetchone("SELECT count(*) FROM events WHERE status='pending'")
        return int(row[0]) if row else 0


def insert_events(items: list[tuple[str | None, str, bytes]], conn: StoreConn) -> list[bool]:
    """Store each (dedupe key, kind header, raw body) unless its dedupe key is known; True
    where it was new. Runs inside the caller's transaction (the webhook's group commit): one
    statement per INSERT_CHUNK deliveries, which names the keys it stored (in no set order);
    of two deliveries with one key in a batch the first is stored."""
    now = time.time()
    out: list[bool] = []
    for start in range(0, len(items), INSERT_CHUNK):
        chunk = items[start : start + INSERT_CHUNK]
        rows = conn.execute(
            "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
            + " ON CONFLICT(dedupe_key) DO NOTHING RETURNING dedupe_key",
            [v for key, header, raw in chunk for v in (key, header, raw, now)],
        ).fetchall()
        stored = {r[0] for r in rows}
        for key, _, _ in chunk:
            out.append(key is None or key in stored)
            stored.discard(key)  # a second delivery with that key in the batch is a duplicate
    return out


def mark_events(rows: list[tuple[str, str | None, int]], conn: StoreConn) -> None:
    """Set each (status, error, id): how the worker finished with those events."""
    conn.executemany("UPDATE events SET status=?, error=? WHERE id=?", rows)
