"""`POST /webhooks/gitlab`: verify, bound, persist, answer — and nothing else.

GitLab waits at most 10 s for an answer, retries, and disables hooks that keep failing, so the
route does no processing: it checks `X-Gitlab-Token` in constant time (401), demands the
`X-Gitlab-Event` header (400) and `Content-Type: application/json` (415) that GitLab always
sends and a browser's cross-site "simple" POST cannot, bounds the body (413), checks it is
JSON (400), answers 200 to kinds the bot does not handle, drops repeated
deliveries (`Idempotency-Key`, else `X-Gitlab-Event-UUID`), writes the event to the store
and only then answers 200 and wakes the event worker (bot.gitlab.inbox). An event that was stored
is never answered with a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.config.model import Config, is_loopback, read_secret
from bot.core.metrics import Metrics
from bot.core.tasks import within
from bot.gitlab.body import parse_json
from bot.gitlab.inbox import event_kind, insert_events
from bot.store.db import Store

log = logging.getLogger("deploybot.webhooks")

MAX_KEY_LENGTH = 200  # longer dedupe keys are stored as their SHA-256, never cut
LINGER = 0.001  # seconds a small group commit may wait for the rest of a busy intake
QUIET_GAP = 0.005  # seconds without a request before a busy intake counts as quiet
TRACE_EVERY = 300.0  # seconds: a failing store logs its traceback once per kind per interval


def dedupe_key(raw: str | None) -> str | None:
    """The stored dedupe key: the header itself when short, else a hash of all of it (two
    long keys sharing a prefix must not collide)."""
    if raw is None or len(raw) <= MAX_KEY_LENGTH:
        return raw
    return "sha256:" + hashlib.sha256(raw.encode("utf-8", "surrogateescape")).hexdigest()


class SecretPolicy:
    """What the route demands of `X-Gitlab-Token`.

    A secret named in the config (`gitlab.webhook_secret_env` / `_file`) is required; if it
    is named but cannot be read, every delivery is refused (fail closed). With no secret
    named at all (the demo), deliveries are accepted unchecked and a warning says so.
    """

    def __init__(self, config: Config) -> None:
        gl = config.gitlab
        self.named = bool(gl and (gl.webhook_secret_env or gl.webhook_secret_file))
        value = read_secret(gl.webhook_secret_env, gl.webhook_secret_file) if gl else None
        self._secret = value.encode() if value else None
        # no `gitlab:` section and reachable from elsewhere: nobody is expected to post
        self.closed = gl is None and not is_loopback(config.http.host)

    def warning(self) -> str | None:
        """What an operator should know at start-up; None when tokens are checked."""
        if self.closed:
            return "no gitlab section and http.listen is not loopback: refusing all webhooks"
        if self._secret is not None:
            return None
        if self.named:
            return "webhook secret is configured but empty or unreadable: refusing all webhooks"
        return "no webhook secret configured: X-Gitlab-Token is not checked"

    def allows(self, token: str | None) -> bool:
        if self.closed:
            return False
        if self._secret is None:
            return not self.named
        if token is None:
            return False
        try:
            given = token.encode("utf-8")
        except UnicodeEncodeError:  # no configured secret is undecodable: 401, not 500
            return False
        return hmac.compare_digest(given, self._secret)


@dataclass
class _Pending:
    key: str | None
    header: str
    raw: bytes
    body: Any  # the parsed JSON, handed to the event worker once stored
    waiter: asyncio.Future[bool]


class WebhookIngest:
    """The route handler; `on_stored` is called after each new event is committed, and
    `handoff` (if given) with the (event id, parsed body, size) of each new event that has a
    dedupe key, so the event worker need not read and parse it again; `last_bytes` says when
    bytes last came on any of the server's connections (for `quiet`)."""

    def __init__(
        self,
        store: Store,
        metrics: Metrics,
        policy: SecretPolicy,
        max_body_bytes: int,
        on_stored: Callable[[], None],
        body_timeout: float = 30.0,
        handoff: Callable[[list[tuple[int, Any, int]]], None] | None = None,
        last_bytes: Callable[[], float] = lambda: float("-inf"),
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.policy = policy
        self.max_body_bytes = max_body_bytes
        self.on_stored = on_stored
        self.handoff = handoff
        self.body_timeout = body_timeout
        self._batch: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None
        self._traced: dict[str, float] = {}  # kind -> when its last traceback was logged
        self._received: dict[str, Any] = {}  # kind -> its events_received counter
        # set once no request was served for QUIET_GAP s: the event worker waits for it
        # (bounded), so a burst is acked first and handled right after (bot.gitlab.inbox)
        self.quiet = asyncio.Event()
        self.quiet.set()
        self._in_flight = 0
        self._quieting: asyncio.TimerHandle | None = None
        self._arrived = float("-inf")  # when the last request came (loop time)
        self._streak = False  # it came less than QUIET_GAP after the one before
        self._last_batch = 0  # deliveries in the last group commit
        self._filled: asyncio.Event | None = None  # set when the waiting batch is full again
        # when bytes last came on any HTTP connection (the loop's clock; the server's
        # connection guard): a request read but not yet routed still means a busy intake
        self.last_bytes = last_bytes
        self._body_read = float("-inf")  # when a body that came after its head was read

    def _reject(self, status: int, reason: str, text: str) -> web.Response:
        self.metrics.webhook_rejected.labels(reason).inc()
        return web.Response(status=status, text=text + "\n")

    async def handle(self, request: web.Request) -> web.Response:
        loop = asyncio.get_running_loop()
        now = loop.time()
        streak = now - self._arrived < QUIET_GAP  # requests coming one after the other
        self._arrived, self._streak = now, streak
        self._in_flight += 1
        self.quiet.clear()
        if self._quieting is not None:
            self._quieting.cancel()
            self._quieting = None
        try:
            return await self._handle(request)
        finally:
            self.metrics.webhook_ack.observe(loop.time() - now)
            self._in_flight -= 1
            if not self._in_flight:
                # lone: no request just before it, no bytes since it (or its late body) came
                if not streak and self.last_bytes() <= max(now, self._body_read):
                    self.quiet.set()  # handle it at once
                else:  # a burst (or bytes came meanwhile): quiet unless more follows soon
                    self._quieting = loop.call_later(QUIET_GAP, self._quiet_if_idle)

    def _quiet_if_idle(self) -> None:
        """Quiet once no request came and no bytes arrived for QUIET_GAP s. The event worker's
        own turns hold up the loop: requests that arrived meanwhile are read in the same turn
        as this timer fires, before they reach the route, and are no pause in the intake."""
        loop = asyncio.get_running_loop()
        idle = loop.time() - max(self._arrived, self.last_bytes())
        if idle >= QUIET_GAP:
            self._quieting = None
            self.quiet.set()
        else:
            self._quieting = loop.call_later(QUIET_GAP - idle, self._quiet_if_idle)

    async def _handle(self, request: web.Request) -> web.Response:
        if not self.policy.allows(request.headers.get("X-Gitlab-Token")):
            return self._reject(401, "token", "invalid or missing X-Gitlab-Token")
        if not request.headers.get("X-Gitlab-Event", "").strip():
            # GitLab always names the event; a browser's cross-site form post cannot
            return self._reject(400, "no_event", "missing X-Gitlab-Event header")
        # the header as GitLab sends it, else as parsed (parameters, case, spaces)
        ctype = request.headers.get("Content-Type")
        if ctype != "application/json" and request.content_type != "application/json":
            return self._reject(
                415, "content_type", "Content-Type must be application/json (as GitLab sends)"
            )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            return self._reject(413, "too_large", f"body over {self.max_body_bytes} bytes")
        raw: bytes | None
        if request.content.is_eof():  # the body came with the headers: no wait, no timer
            whole = request.content.read_nowait(-1)
            raw = whole if len(whole) <= self.max_body_bytes else None
        else:
            try:
                async with asyncio.timeout(self.body_timeout):
                    raw = await self._read_body(request)
                self._body_read = asyncio.get_running_loop().time()  # its last bytes came
            except TimeoutError:
                return self._reject(
                    408, "slow_body", f"body not sent within {self.body_timeout:g}s"
                )
        if raw is None:
            return self._reject(413, "too_large", f"body over {self.max_body_bytes} bytes")
        try:
            body = parse_json(raw)
        except ValueError:
            return self._reject(400, "bad_json", "body is not JSON")
        except RecursionError:
            return self._reject(400, "too_deep", "JSON nested too deeply")
        header = request.headers.get("X-Gitlab-Event", "")
        kind = event_kind(header, body)
        if kind is None:
            self.metrics.events_received.labels("unknown").inc()
            self.metrics.events_processed.labels("unknown", "ignored").inc()
            return web.Response(text="ignored: not an event kind this bot handles\n")
        key = dedupe_key(
            request.headers.get("Idempotency-Key") or request.headers.get("X-Gitlab-Event-UUID")
        )
        try:
            stored = await self._store(key, header or kind, raw, body)
        except Exception as exc:  # not stored: GitLab retries on 5xx
            self._log_failure(kind, exc)
            return web.Response(status=503, text="could not store the event; retry\n")
        if not stored:
            self.metrics.events_deduped.inc()
            return web.Response(text="duplicate: already received\n")
        received = self._received.get(kind)
        if received is None:
            received = self._received[kind] = self.metrics.events_received.labels(kind)
        received.inc()
        return web.Response(text="stored\n")

    def _log_failure(self, kind: str, exc: BaseException) -> None:
        """One line per failed delivery (kind, cause); the traceback once per kind per
        TRACE_EVERY s (a database outage is thousands of identical failures)."""
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        reason = f"{type(exc).__name__}: {cause[0] if cause else ''}"
        now = time.monotonic()
        trace = now - self._traced.get(kind, -TRACE_EVERY) >= TRACE_EVERY
        if trace:
            self._traced[kind] = now
        log.error("could not store a %s webhook (answered 503): %s", kind, reason,
                  exc_info=exc if trace else None)  # fmt: skip

    async def _read_body(self, request: web.Request) -> bytes | None:
        """The body, or None as soon as it grows past the limit (chunked bodies included)."""
        chunks: list[bytes] = []
        size = 0
        while chunk := await request.content.read(65536):
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _store(self, key: str | None, header: str, raw: bytes, body: Any) -> bool:
        """Insert the event unless its dedupe key is known; True if it was new.

        Deliveries arriving together share one transaction (group commit): each caller
        still gets its answer only after the commit that holds its event.
        """
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._batch.append(_Pending(key, header, raw, body, waiter))
        if self._filled is not None and len(self._batch) >= self._last_batch:
            self._filled.set()
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches(), name="webhook-store")
        return await waiter

    async def _linger(self) -> None:
        """A busy intake's clients come back together (each after its answer): a commit of
        one while the last one held many waits up to LINGER for the others, so one fsync
        holds them all instead of two (a delivery after a quiet spell goes at once)."""
        if not self._streak or len(self._batch) * 2 > self._last_batch:
            return
        self._filled = asyncio.Event()
        try:
            with contextlib.suppress(TimeoutError):
                await within(self._filled.wait(), LINGER)
        finally:
            self._filled = None

    async def _write_batches(self) -> None:
        while self._batch:
            await self._linger()
            batch, self._batch = self._batch, []
            self._last_batch = len(batch)
            try:
                results = await self.store.transaction(  # its callers wait: before bookkeeping
                    functools.partial(insert_events, [(p.key, p.header, p.raw) for p in batch]),
                    urgent=True,
                )
            except Exception as exc:  # every caller of this batch answers 503
                for p in batch:
                    if not p.waiter.done():
                        p.waiter.set_exception(exc)
                continue
            if any(new for new, _ in results):
                if self.handoff is not None:
                    self.handoff([(event_id, p.body, len(p.raw)) for p, (_, event_id)
                                  in zip(batch, results, strict=True) if event_id is not None])  # fmt: skip
                self.on_stored()  # even if every client of the batch went away
            for p, (new, _) in zip(batch, results, strict=True):
                if not p.waiter.done():  # the client may have gone away meanwhile
                    p.waiter.set_result(new)
