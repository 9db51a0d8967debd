"""Route stored webhook events to their handlers, after the HTTP answer went out.

The webhook route only verifies and persists; this worker takes the
pending rows from the store in arrival order into lanes (one per pipeline commit, merge
request or project: `order_key`), runs lanes concurrently and each lane in order, parses each with the pure
`bot.gitlab.events.parse_event`, dispatches the typed event through a `Router` (by kind,
and optionally one attribute such as a merge request's `action`, like gidgethub's router),
and marks the row processed, malformed or failed. Rows still pending at start-up (the
process died between the 200 and the processing) are handled first, so nothing is lost.

Under load, acks come first and queued events are handled in batches: while webhook requests
are being served (`WebhookIngest.quiet` is clear) the worker waits until the intake is quiet,
at most `max_lag` seconds after new events were stored; then it takes what is pending at once.
An event whose news a later queued event of the same thing carries as well is marked
`superseded` instead of handled, in the transaction that marks the next handled event: in
any lane when the later one says exactly the same (its state equals: a repeated "running"),
and in a lane holding a backlog (COALESCE_FROM events or more) also when it says more (the
router's `coalesce` rule, e.g. a pipeline's stage 2 followed by its stage 3 or its final
state; without a backlog each stage is said): what is said is the newest
state, never an older one after it, and final states are never skipped for a different one.
Callbacks that only need to know that events came (`Router.after`, the monitors' wake-up) run
once per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bot.core.metrics import Metrics
from bot.core.tasks import TaskSet, wait_until, within
from bot.gitlab.body import parse_json
from bot.gitlab.events import Event, parse_event
from bot.gitlab.fields import MalformedEvent
from bot.store.db import Store, StoreConn
from bot.store.sal import current_action

log = logging.getLogger("deploybot.events")

Handler = Callable[[Any], Awaitable[None]]
S = TypeVar("S")

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


@dataclass(frozen=True)
class Coalesce(Generic[S]):
    """When a queued event may be skipped for a later one of the same kind: `state(body)`
    (the delivery's JSON; asked of every queued event, so it should not build the typed
    event) is (what it is about, what it says) or None (never skipped); an earlier event is
    skipped when a later one about the same thing, that parses, says something that
    `covers(later, earlier)`."""

    state: Callable[[Any], tuple[Hashable, S] | None]
    covers: Callable[[S, S], bool]


class Router:
    """Handlers subscribe to an event kind, optionally narrowed by its `action`."""

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str | None], list[Handler]] = {}
        self._coalesce: dict[str, Coalesce[Any]] = {}
        self._after: dict[str, list[Callable[[], None]]] = {}

    def register(self, kind: str, handler: Handler, action: str | None = None) -> None:
        self._handlers.setdefault((kind, action), []).append(handler)

    def after(self, kinds: Iterable[str], callback: Callable[[], None]) -> None:
        """Call `callback` once a lane of queued events is done, if events of `kinds` were
        handled meanwhile: once per batch, where a handler would run once per event (a
        monitor that looks again after webhooks needs to look once, after the burst)."""
        for kind in kinds:
            self._after.setdefault(kind, []).append(callback)

    def settle(self, kinds: Iterable[str]) -> None:
        """Run the `after` callbacks of these handled kinds, each once."""
        called: list[Callable[[], None]] = []
        for kind in kinds:
            for callback in self._after.get(kind, []):
                if callback not in called:
                    called.append(callback)
                    callback()

    def coalesce(self, kind: str, rule: Coalesce[Any]) -> None:
        """Queued events of `kind` may be skipped for later ones (`Coalesce`); the module
        that says what those events mean declares it, as it knows what a later one covers."""
        self._coalesce[kind] = rule

    def coalescing(self, kind: str) -> Coalesce[Any] | None:
        return self._coalesce.get(kind)

    def handlers_for(self, event: Event) -> list[Handler]:
        found = list(self._handlers.get((event.kind, None), []))
        action = getattr(event, "action", None)
        if isinstance(action, str):
            found += self._handlers.get((event.kind, action), [])
        return found

    async def dispatch(self, event: Event) -> int:
        """Run every matching handler in registration order; return how many took it (those
        that ran, and the `after` callbacks that will)."""
        handlers = self.handlers_for(event)
        for handler in handlers:
            await handler(event)
        return len(handlers) + len(self._after.get(event.kind, []))


def order_key(header: str, raw: bytes) -> str:
    """Which events must be handled in arrival order: those of one pipeline commit (its
    branch and tag pipelines share a release), one merge request, else one project. Events of
    different keys run concurrently. Unparseable bodies share one lane (they only fail)."""
    return _order_key(header, _parsed(raw))


def _parsed(raw: bytes) -> Any:
    """The body as JSON, or the exception that refused it (the lane and the handler share one
    parse of each event)."""
    try:
        return parse_json(raw)
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


class _Queued:
    """One stored event in its lane: the parsed body (or why it is not JSON) and, once
    parsed, the typed event (or why it is malformed)."""

    __slots__ = ("id", "header", "body", "typed", "event", "error", "superseded", "state",
                 "covered_by")  # fmt: skip

    def __init__(self, event_id: int, header: str, body: Any) -> None:
        self.id = event_id
        self.header = header
        self.body = body
        self.typed = False
        self.event: Event | None = None
        self.error: Exception | None = None
        self.superseded = False
        self.covered_by: _Queued | None = None  # the later event that says its news too
        self.state: tuple[Hashable, Any] | None | bool = False  # False: not asked yet

    def parse(self) -> Event | None:
        """The typed event (parsed once); None for kinds nobody handles or when malformed."""
        if not self.typed:
            self.typed = True
            try:
                if isinstance(self.body, Exception):
                    raise self.body
                self.event = parse_event(self.header, self.body)
            except (MalformedEvent, ValueError, RecursionError) as exc:
                self.error = exc
        return self.event


_UNREAD = object()  # an event whose body the webhook route did not hand over


class _Lane(deque[_Queued]):
    """A lane's queue; `fresh` when events were added since it was last looked over."""

    fresh = True


MAX_LAG = 0.5  # seconds new events may wait for the webhook intake to go quiet
COALESCE_FROM = 16  # queued events in a lane from which older states are skipped (a backlog)
HANDOFF_BYTES = 4 << 20  # JSON of the bodies the webhook route hands over, kept at most


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
        max_lag: float = MAX_LAG,
    ) -> None:
        self.store = store
        self.router = router
        self.metrics = metrics
        self.keep_seconds = keep_seconds
        self.prune_every = prune_every
        self.max_queued = max_queued
        self.max_lag = max_lag
        # set while no webhook request is being served (the intake's); None: never wait
        self.intake_quiet: asyncio.Event | None = None
        self._woken_at: float | None = None  # when events were stored that nobody took yet
        self._slots = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._last_prune = 0.0
        self._high = 0  # the highest event id taken from the store
        self._lanes: dict[str, _Lane] = {}
        self._marks: list[tuple[list[tuple[str, str | None, int]], asyncio.Future[None]]] = []
        self._marker: asyncio.Task[None] | None = None
        self._queued = 0
        self._handled: set[str] = set()  # kinds handled since a lane was last done
        self._tasks = TaskSet()  # one per busy lane
        # event id -> (body, size) parsed by the webhook route (`handoff`), taken by `_take`
        self._handed: dict[int, tuple[Any, int]] = {}
        self._handed_bytes = 0
        self._running = False
        # replicas: another replica may store events, so look again this often (seconds)
        self.poll_every: float | None = None

    def handoff(self, bodies: list[tuple[int, Any, int]]) -> None:
        """Bodies the webhook route parsed (event id, body, size of its JSON) for the events it
        just stored: this worker takes them instead of reading and parsing them again, while
        it runs (a standby's worker does not). At most HANDOFF_BYTES of JSON are kept, the
        oldest go first: those events are read from the store as any other."""
        if not self._running:
            return
        for event_id, body, size in bodies:
            if event_id > self._high:
                self._handed[event_id] = (body, size)
                self._handed_bytes += size
        while self._handed_bytes > HANDOFF_BYTES:
            self._drop_handed(next(iter(self._handed)))

    def _drop_handed(self, event_id: int) -> Any:
        body, size = self._handed.pop(event_id, (_UNREAD, 0))
        self._handed_bytes -= size
        return body

    def wake(self) -> None:
        """Called by the webhook route after it stored an event."""
        if self._woken_at is None:
            self._woken_at = time.monotonic()
        self._idle.clear()
        self._wake.set()

    async def _acks_first(self) -> None:
        """While webhook requests are being served, wait for a quiet moment, at most
        `max_lag` s after the first event not yet taken was stored: a burst is acked at full
        speed and handled right after, in batches."""
        quiet, since = self.intake_quiet, self._woken_at
        self._woken_at = None
        if quiet is None or since is None or quiet.is_set():
            return
        left = since + self.max_lag - time.monotonic()
        if left > 0:
            with contextlib.suppress(TimeoutError):
                await within(quiet.wait(), left)

    async def run(self) -> None:
        self._running = True
        try:
            while True:
                self._wake.clear()
                await self._acks_first()
                taken = await self._take()
                await self._prune()
                if taken or self._wake.is_set():
                    continue
                if not self._lanes:
                    self._idle.set()
                # replicas: another replica may have stored events; look again after a while
                with contextlib.suppress(TimeoutError):
                    await within(self._wake.wait(), self.poll_every)
        finally:
            self._running = False
            self._tasks.cancel()
            self._lanes.clear()
            self._handed.clear()
            self._handed_bytes = 0
            self._queued = 0
            self._high = 0  # what was not finished is still pending in the store

    async def wait_idle(self, timeout: float) -> bool:
        """Until everything stored so far was processed; False on timeout."""
        return await wait_until(self._idle, timeout)

    async def _take(self, limit: int = 1000) -> int:
        """Queue pending events not taken yet into their lanes; start idle lanes."""
        room = min(limit, self.max_queued - self._queued)
        if room <= 0:
            return 0
        rows = await self.store.fetchall(
            "SELECT id, kind FROM events WHERE status='pending' AND id > ? ORDER BY id LIMIT ?",
            (self._high, room),
        )
        handed = {row["id"]: self._drop_handed(row["id"]) for row in rows}
        if rows:  # a body handed over after its event was taken (read from the store) goes
            last = rows[-1]["id"]
            for event_id in [i for i in itertools.islice(self._handed, 64) if i <= last]:
                self._drop_handed(event_id)
        unread = [event_id for event_id, body in handed.items() if body is _UNREAD]
        for start in range(0, len(unread), INSERT_CHUNK):
            ids = unread[start : start + INSERT_CHUNK]
            marks = ",".join("?" * len(ids))
            for row in await self.store.fetchall(
                f"SELECT id, body FROM events WHERE id IN ({marks})",  # noqa: S608 - placeholders
                ids,
            ):
                handed[row["id"]] = _parsed(bytes(row["body"]))
        busy = {item.id for lane in self._lanes.values() for item in lane}
        for row in rows:
            self._high = max(self._high, row["id"])
            if row["id"] in busy:  # taken again after a lane gave back (store failure)
                continue
            body = handed[row["id"]]
            key = _order_key(row["kind"], body)
            item = _Queued(row["id"], row["kind"], body)
            lane = self._lanes.get(key)
            self._queued += 1
            if lane is not None:
                lane.append(item)
                lane.fresh = True
                continue
            self._lanes[key] = _Lane([item])
            self._tasks.spawn(self._drain(key), name=f"events-{key}")
        return len(rows)

    def _supersede(self, lane: _Lane) -> None:
        """Flag the lane's events whose news a later event in it carries too (`Coalesce`);
        without a backlog only those a later one repeats (the same state)."""
        lane.fresh = False
        if len(lane) < 2:
            return
        backlog = len(lane) >= COALESCE_FROM
        later: dict[tuple[str, Hashable], list[tuple[Any, _Queued]]] = {}  # said later
        for item in reversed(lane):
            if item.superseded:
                continue
            kind = event_kind(item.header, item.body) if isinstance(item.body, dict) else None
            rule = self.router.coalescing(kind) if kind else None
            if rule is None:
                continue
            if item.state is False:
                item.state = rule.state(item.body)
            if not isinstance(item.state, tuple):
                continue
            what, state = item.state
            said = later.setdefault((kind or "", what), [])
            newer = next(
                (n for s, n in said if (rule.covers(s, state) if backlog else s == state)), None
            )
            if newer is not None:
                item.superseded, item.covered_by = True, newer
            else:
                said.append((state, item))

    @staticmethod
    def _skippable(item: _Queued) -> bool:
        """A superseded event is skipped only if the event that covers it can be handled (it
        parses); else it is handled itself."""
        cover = item.covered_by
        while cover is not None and cover.superseded:
            cover = cover.covered_by
        if cover is None or cover.parse() is None:
            item.superseded = False
        return item.superseded

    async def _drain(self, key: str) -> None:
        lane = self._lanes[key]
        try:
            async with self._slots:
                while lane:
                    if lane.fresh:
                        self._supersede(lane)
                    skipped = 0
                    while skipped < len(lane) and lane[skipped].superseded:
                        if not self._skippable(lane[skipped]):
                            break
                        skipped += 1
                    rows: list[tuple[str, str | None, int]] = [
                        ("superseded", None, lane[i].id) for i in range(skipped)
                    ]
                    try:
                        if skipped < len(lane):
                            item = lane[skipped]
                            status, error = await self._process(item)
                            rows.append((status, error, item.id))
                        await self._mark(rows)
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # the store failed: retry this lane later
                        log.warning("webhook event %d stays pending: %s", lane[0].id, exc)
                        self._queued -= len(lane)
                        self._high = min(self._high, lane[0].id - 1)
                        lane.clear()
                        await asyncio.sleep(1.0)  # back off before the store is asked again
                        break
                    if skipped:
                        kinds = Counter(
                            event_kind(done.header, done.body) or "unknown"
                            for done in (lane.popleft() for _ in range(skipped))
                        )
                        for kind, count in kinds.items():
                            self.metrics.events_processed.labels(kind, "superseded").inc(count)
                    if len(rows) > skipped:
                        lane.popleft()
                    self._queued -= len(rows)
        finally:
            if self._lanes.get(key) is lane and not lane:
                del self._lanes[key]
            handled, self._handled = self._handled, set()
            self.router.settle(handled)
            self._wake.set()  # room for more, or idle now

    async def _mark(self, rows: list[tuple[str, str | None, int]]) -> None:
        """Record how events ended (status, error, id), committed before this returns; lanes
        finishing together share one transaction (group commit, as the webhook route does
        for new events)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append((rows, done))
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._write_marks(), name="events-mark")
        await done

    async def _write_marks(self) -> None:
        while self._marks:
            marks, self._marks = self._marks, []
            try:
                rows = [row for lane_rows, _ in marks for row in lane_rows]
                # a mark lost to a power cut only means the event is handled again (as
                # after a crash between handling and marking): no need to wait for the disk
                await self.store.transaction(functools.partial(mark_events, rows), durable=False)
            except Exception as exc:  # every lane of this batch retries its event later
                for _, done in marks:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in marks:
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
            item = _Queued(row["id"], row["kind"], _parsed(bytes(row["body"])))
            status, error = await self._process(item)
            await self._mark([(status, error, item.id)])
        handled, self._handled = self._handled, set()
        self.router.settle(handled)
        return len(rows)

    async def oldest_pending_age(self) -> float:
        """Seconds the oldest unprocessed event has waited (0 when none)."""
        row = await self.store.fetchone(
            "SELECT min(received_at) FROM events WHERE status='pending'"
        )
        oldest = row[0] if row else None
        return max(0.0, time.time() - float(oldest)) if oldest is not None else 0.0

    async def _process(self, item: _Queued) -> tuple[str, str | None]:
        event_id, header, body = item.id, item.header, item.body
        kind = "unknown" if isinstance(body, Exception) else event_kind(header, body) or "unknown"
        event = item.parse()
        if item.error is not None:
            exc = item.error
            log.warning("webhook event %d (%s) is malformed: %s", event_id, header, exc)
            self.metrics.events_processed.labels(kind, "malformed").inc()
            return "malformed", str(exc)[:500]
        if event is None:
            self.metrics.events_processed.labels(kind, "ignored").inc()
            return "ignored", None
        current_action.set(f"webhook-{event_id}")  # what it sets off shares one SAL action id
        self._handled.add(event.kind)
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
        # the newest event is kept: SQLite numbers the rows of an emptied table from 1 again,
        # below the ids this worker took (`_high`), and would never take the next event
        await self.store.execute(
            "DELETE FROM events WHERE status != 'pending' AND received_at < ?"
            " AND id < (SELECT max(id) FROM events)",
            (now - self.keep_seconds,),
        )

    async def pending_count(self) -> int:
        row = await self.store.fetchone("SELECT count(*) FROM events WHERE status='pending'")
        return int(row[0]) if row else 0


def insert_events(
    items: list[tuple[str | None, str, bytes]], conn: StoreConn
) -> list[tuple[bool, int | None]]:
    """Store each (dedupe key, kind header, raw body) unless its dedupe key is known; for each,
    whether it was new and, for a new one with a key, its event id. Runs inside the caller's
    transaction (the webhook's group commit): one statement per INSERT_CHUNK deliveries,
    which names the rows it stored (in no set order); of two deliveries with one key in a
    batch the first is stored."""
    now = time.time()
    out: list[tuple[bool, int | None]] = []
    for start in range(0, len(items), INSERT_CHUNK):
        chunk = items[start : start + INSERT_CHUNK]
        rows = conn.execute(
            "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES "
            + ", ".join(["(?, ?, ?, ?)"] * len(chunk))
            + " ON CONFLICT(dedupe_key) DO NOTHING RETURNING id, dedupe_key",
            [v for key, header, raw in chunk for v in (key, header, raw, now)],
        ).fetchall()
        stored = {r[1]: int(r[0]) for r in rows if r[1] is not None}
        for key, _, _ in chunk:
            if key is None:
                out.append((True, None))
            else:  # a second delivery with that key in the batch is a duplicate
                event_id = stored.pop(key, None)
                out.append((event_id is not None, event_id))
    return out


def mark_events(rows: list[tuple[str, str | None, int]], conn: StoreConn) -> None:
    """Set each (status, error, id): how the worker finished with those events."""
    conn.executemany("UPDATE events SET status=?, error=? WHERE id=?", rows)
