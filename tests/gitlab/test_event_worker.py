"""The event worker on a real store: it takes the bodies the webhook route handed over (or
reads them back), and keeps taking events after old ones are pruned."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from bot.core.metrics import Metrics
from bot.gitlab.events import PipelineEvent
from bot.gitlab.inbox import HANDOFF_BYTES, EventWorker, Router, insert_events
from bot.store.db import Store
from tests.support.botproc import pipeline_hook


class Seen:
    def __init__(self) -> None:
        self.ids: list[int] = []

    async def __call__(self, event: Any) -> None:
        assert isinstance(event, PipelineEvent)
        self.ids.append(event.pipeline_id)


async def stored(store: Store, key: str, body: Any) -> int:
    """The new event's id, as the route's group commit learns it."""
    raw = json.dumps(body).encode()
    ((new, event_id),) = await store.transaction(
        lambda c: insert_events([(key, "Pipeline Hook", raw)], c)
    )
    assert new and event_id is not None
    return event_id


async def worker_with(store: Store, seen: Seen, **kwargs: Any) -> tuple[EventWorker, Any]:
    router = Router()
    router.register("pipeline", seen)
    worker = EventWorker(store, router, Metrics(), **kwargs)
    return worker, asyncio.create_task(worker.run())


async def test_events_after_a_prune_that_emptied_the_table_are_still_taken(store: Store) -> None:
    """A quiet week: every old event is pruned; the next one is still handled (SQLite gives
    an emptied table's next row the id 1 again, below what the worker had taken)."""
    seen = Seen()
    worker, task = await worker_with(store, seen, keep_seconds=60, prune_every=0)
    try:
        for n in range(3):
            await stored(store, f"old-{n}", pipeline_hook(1000 + n, "running"))
        worker.wake()
        assert await worker.wait_idle(10)
        await store.execute("UPDATE events SET received_at = 0")  # a week ago
        worker.wake()  # looks again: prunes what it finished long ago
        assert await worker.wait_idle(10)
        left = await store.fetchall("SELECT id FROM events")
        assert len(left) <= 1
        event_id = await stored(store, "after-the-quiet-week", pipeline_hook(2000, "running"))
        worker.wake()
        assert await worker.wait_idle(10)
        assert seen.ids == [1000, 1001, 1002, 2000]
        row = await store.fetchone("SELECT status FROM events WHERE id = ?", (event_id,))
        assert row["status"] == "processed"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_handed_body_is_used_once_and_a_late_one_never_for_another_event(
    store: Store,
) -> None:
    seen = Seen()
    worker, task = await worker_with(store, seen)
    try:
        first = await stored(store, "a", pipeline_hook(3000, "running"))
        # the route hands over what it parsed: the worker uses it, not the stored bytes
        worker.handoff([(first, pipeline_hook(3001, "running"), 100)])
        worker.wake()
        assert await worker.wait_idle(10)
        assert seen.ids == [3001]
        # handed over only after its event was taken (read from the store): dropped, not
        # kept for whatever event comes next
        second = await stored(store, "b", pipeline_hook(3002, "running"))
        worker.wake()
        assert await worker.wait_idle(10)
        worker.handoff([(second, pipeline_hook(3999, "running"), 100)])
        await stored(store, "c", pipeline_hook(3003, "running"))
        worker.wake()
        assert await worker.wait_idle(10)
        assert seen.ids == [3001, 3002, 3003]
        # the route's insert names the new event's id, none for a duplicate key or no key
        again, none = (json.dumps(pipeline_hook(n, "running")).encode() for n in (3003, 3004))
        results = await store.transaction(
            lambda c: insert_events(
                [("c", "Pipeline Hook", again), (None, "Pipeline Hook", none)], c
            )
        )
        assert results == [(False, None), (True, None)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_handed_bodies_are_bounded_by_size_and_a_standby_keeps_none(store: Store) -> None:
    seen = Seen()
    router = Router()
    router.register("pipeline", seen)
    worker = EventWorker(store, router, Metrics())  # a standby's: not running
    first = await stored(store, "s", pipeline_hook(4000, "running"))
    worker.handoff([(first, pipeline_hook(4900, "running"), 100)])  # not kept
    task = asyncio.create_task(worker.run())  # the leader now
    try:
        assert await worker.wait_idle(10)
        assert seen.ids == [4000]  # read from the store
        ids = [await stored(store, f"k{n}", pipeline_hook(4001 + n, "running")) for n in range(3)]
        half = HANDOFF_BYTES // 2 + 1  # two of these do not fit: the oldest go
        worker.handoff([(i, pipeline_hook(4901 + n, "running"), half) for n, i in enumerate(ids)])
        worker.wake()
        assert await worker.wait_idle(10)
        assert seen.ids == [4000, 4001, 4002, 4903]  # stored, stored, the one body kept
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
