"""Watching a rollout through the API's watch streams (`kubernetes.aio`), as kubectl does.

A `Follower` keeps one kind of object in one namespace up to date: it lists once, then
watches from the list's resourceVersion. A stream that ends (the server's timeout) or drops
(a cut connection) is resumed from the last resourceVersion it delivered, so no change is
lost; a resourceVersion the server has compacted away (410 Gone) makes it list again.
Transient failures are retried with backoff and remembered as `error` for the final message.

`watch_rollout` follows Deployments, StatefulSets, DaemonSets, ReplicaSets and pods together
and asks `bot.cluster.rollout.judge` after every change until it says done or failed, or the
deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from bot.cluster.rollout import Judgement, Releases, judge
from bot.cluster.workloads import pod_state
from bot.core.tasks import within

log = logging.getLogger("deploybot.kube")

Lister = Callable[..., Awaitable[Any]]  # e.g. AppsV1Api.list_namespaced_deployment


class Expired(Exception):
    """The watch's resourceVersion is older than the server keeps (HTTP 410 Gone)."""


@dataclass
class Follower:
    """The current objects of one kind in one namespace, kept by list + watch."""

    kind: str
    lister: Lister
    namespace: str
    changed: asyncio.Event
    list_once: Callable[[], Awaitable[Any]]  # one LIST with the caller's retries
    watch_seconds: int = 60
    backoff: float = 0.5
    objects: dict[str, Any] = field(default_factory=dict)
    resource_version: str | None = None
    synced: bool = False
    error: str | None = None

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                if self.resource_version is None:
                    await self._list()
                await self._watch()
                failures = 0
            except Expired:
                log.info("watch of %s in %s expired; listing again", self.kind, self.namespace)
                self.resource_version = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API or the network; retried until the deadline
                self.error = _reason(exc)
                failures += 1
                await asyncio.sleep(min(self.backoff * 2 ** min(failures - 1, 5), 10.0))

    async def _list(self) -> None:
        result = await self.list_once()
        self.objects = {o.metadata.name: o for o in result.items or []}
        self.resource_version = result.metadata.resource_version
        self.synced, self.error = True, None
        self.changed.set()

    async def _watch(self) -> None:
        from kubernetes.aio.client.exceptions import ApiException  # on first use (bot.cluster.kube)
        from kubernetes.aio.watch import Watch

        async with Watch() as watch:
            stream = watch.stream(
                self.lister,
                self.namespace,
                resource_version=self.resource_version,
                timeout_seconds=self.watch_seconds,
                allow_watch_bookmarks=True,
                _request_timeout=self.watch_seconds + 10,
            )
            try:
                async for event in stream:
                    self._apply(event)
            except ApiException as exc:
                if exc.status == 410:
                    raise Expired() from None
                raise

    def _apply(self, event: dict[str, Any]) -> None:
        kind, obj = event.get("type"), event.get("object")
        meta = getattr(obj, "metadata", None)
        if meta is None:
            return
        if meta.resource_version:
            self.resource_version = meta.resource_version
        if kind == "BOOKMARK":
            return
        if kind == "DELETED":
            self.objects.pop(meta.name, None)
        else:
            self.objects[meta.name] = obj
        self.error = None
        self.changed.set()


STOP_WAIT = 5.0  # seconds the watches get to stop once the rollout is judged

KINDS = ("deployments", "statefulsets", "daemonsets", "replicasets", "pods")


@dataclass(frozen=True)
class WatchOutcome:
    judgement: Judgement | None  # None: never had every kind listed before the deadline
    last: Judgement | None  # the newest judgement (also when the deadline passed)
    error: str | None  # the newest failure of a list or watch, if any


def judge_followers(followers: dict[str, Follower], releases: Releases | None = None) -> Judgement:
    pods = [pod_state(p) for p in followers["pods"].objects.values()]
    return judge(
        followers["deployments"].objects.values(),
        followers["statefulsets"].objects.values(),
        followers["daemonsets"].objects.values(),
        followers["replicasets"].objects.values(),
        pods,
        releases,
    )


async def watch_rollout(
    followers: dict[str, Follower],
    changed: asyncio.Event,
    timeout: float,  # noqa: ASYNC109 - the rollout deadline is the product's setting
    releases: Releases | None = None,
) -> WatchOutcome:
    """Run the followers until `judge` says done or failed, or `timeout` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    tasks = [
        asyncio.create_task(f.run(), name=f"watch-{f.kind}-{f.namespace}")
        for f in followers.values()
    ]
    last: Judgement | None = None
    try:
        # The deadline is checked on every round, not only by each wait's timeout: a round
        # woken by a change just before the deadline must still end the watch there.
        while (remaining := deadline - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                await within(changed.wait(), remaining)
            changed.clear()
            if not all(f.synced for f in followers.values()):
                continue
            last = judge_followers(followers, releases)
            if last.state != "progressing":
                return WatchOutcome(last, last, None)
    finally:
        for task in tasks:
            task.cancel()
        # a watch stream that ignores its cancellation (a half-closed connection) must not
        # hold the deploy: wait a bounded time, then leave it to finish on its own
        _, stuck = await asyncio.wait(tasks, timeout=STOP_WAIT)
        if stuck:
            log.warning("%d rollout watch(es) did not stop within %gs", len(stuck), STOP_WAIT)
    errors = [f.error for f in followers.values() if f.error]
    return WatchOutcome(None, last, errors[0] if errors else None)


def _reason(exc: BaseException) -> str:
    """A short cause for a failed list or watch, without URLs or headers."""
    from kubernetes.aio.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectionError | ConnectionError):
        return "connection refused or reset"
    return str(exc).split("\n")[0][:120] or type(exc).__name__
