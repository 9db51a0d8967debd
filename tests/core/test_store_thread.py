"""The store's one thread: a webhook's group commit does not queue behind bookkeeping, and a
store nobody closed does not leave its thread behind."""

from __future__ import annotations

import asyncio
import gc
import threading
from pathlib import Path

from bot.store.db import Store, StoreConn


async def test_an_urgent_transaction_runs_before_the_ones_queued_earlier(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        ran: list[str] = []
        busy, release = threading.Event(), threading.Event()

        def hold(conn: StoreConn) -> None:  # the thread is busy with something long
            busy.set()
            assert release.wait(10)

        def note(name: str):  # type: ignore[no-untyped-def]
            def write(conn: StoreConn) -> None:
                ran.append(name)
                conn.execute(
                    "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)",
                    (name, "Pipeline Hook", b"{}", 1.0),
                )

            return write

        first = asyncio.create_task(store.transaction(hold))
        assert await asyncio.to_thread(busy.wait, 10)
        marks = [asyncio.create_task(store.transaction(note(f"mark-{i}"), durable=False))
                 for i in range(3)]  # fmt: skip
        await asyncio.sleep(0)  # queued, in this order
        webhook = asyncio.create_task(store.transaction(note("webhook"), urgent=True))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, webhook, *marks)
        assert ran == ["webhook", "mark-0", "mark-1", "mark-2"]
        rows = await store.fetchall("SELECT dedupe_key FROM events ORDER BY id")
        assert [r[0] for r in rows] == ran  # committed in that order too
    finally:
        await store.close()


async def test_a_cancelled_call_that_has_not_started_never_runs(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        busy, release = threading.Event(), threading.Event()
        ran: list[str] = []
        first = asyncio.create_task(store.transaction(lambda c: (busy.set(), release.wait(10))))
        assert await asyncio.to_thread(busy.wait, 10)
        late = asyncio.create_task(store.transaction(lambda c: ran.append("late")))
        await asyncio.sleep(0)
        late.cancel()
        await asyncio.gather(late, return_exceptions=True)  # the cancel reached the call
        release.set()
        await first
        assert await store.fetchone("SELECT 1") is not None  # the thread went past it
        assert ran == []
    finally:
        await store.close()


async def test_a_store_that_was_never_closed_does_not_keep_its_thread(tmp_path: Path) -> None:
    def store_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "store"]

    before = set(store_threads())
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    (thread,) = set(store_threads()) - before
    await store.execute("DELETE FROM events")
    del store
    gc.collect()
    await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
