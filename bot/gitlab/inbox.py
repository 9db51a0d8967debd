"""Route stored webhook events to their handlers, after the HTTP answer went out.

The webhook route only verifies and persists; this worker takes the
pending rows from the store in arrival order, parses each with the pure
`bot.gitlab_events.parse_event`, dispatches the typed event through a `Router` (by kind,
and optionally one attribute such as a merge request's `action`, like gidgethub's router),
and marks the row processed, malformed or failed. Rows still pending at start-up (the
process died between the 200 and the processing) are handled first, so nothing is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.core.metrics import Metrics
from bot.core.store import Store, StoreConn
from bot.gitlab.events import Event, parse_event
from bot.gitlab.fields import MalformedEvent

log = logging.getLogger("deploybot.events")

Handler = Callable[[Any], Awaitable[None]]

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


class EventWorker:
    """Processes stored events one at a time, in arrival order (owned by the supervisor)."""

    def __init__(
        self,
        store: Store,
        router: Router,
        metrics: Metrics,
        *,
        keep_seconds: float = 7 * 86400,
        prune_every: float = 3600,
    ) -> None:
        self.store = store
        self.router = router
        self.metrics = metrics
        self.keep_seconds = keep_seconds
        self.prune_every = prune_every
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._last_prune = 0.0
        # replicas: another replica may store events, so look again this often (seconds)
        self.poll_every: float | None = None

    def wake(self) -> None:
        """Called by the webhook route after it stored an event."""
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            while await self.process_pending():
                pass
            await self._prune()
            if self._wake.is_set():  # an event arrived after the last fetch
                continue
            self._idle.set()
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_every)
            except TimeoutError:
                pass

    async def wait_idle(self, timeout: float) -> bool:
        """Until everything stored so far was processed; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def process_pending(self, limit: int = 100) -> int:
        """Handle up to `limit` pending events, oldest first; return how many."""
        rows = await self.store.fetchall(
            "SELECT id, kind, body FROM events WHERE status='pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        for row in rows:
            status, error = await self._process(row["id"], row["kind"], bytes(row["body"]))
            await self.store.execute(
                "UPDATE events SET status=?, error=? WHERE id=?", (status, error, row["id"])
            )
        return len(rows)

    async def _process(self, event_id: int, header: str, raw: bytes) -> tuple[str, str | None]:
        kind = "unknown"
        try:
            body = json.loads(raw)
            kind = event_kind(header, body) or "unknown"
            event = parse_event(header, body)
        except (MalformedEvent, ValueError) as exc:
            log.warning("webhook event %d (%s) is malformed: %s", event_id, header, exc)
            self.metrics.events_processed.labels(kind, "malformed").inc()
            return "malformed", str(exc)[:500]
        if event is None:
            self.metrics.events_processed.labels(kind, "ignored").inc()
            return "ignored", None
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
    where it was new. Runs inside the caller's transaction (the webhook's group commit)."""
    now = time.time()
    return [
        conn.execute(
            "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(dedupe_key) DO NOTHING",
            (key, header, raw, now),
        ).rowcount
        == 1
        for key, header, raw in items
    ]
