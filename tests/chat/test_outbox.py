"""The outbox: durable, per-room flood budget, coalescing, packing, restarts,
and the order lines take onto a connection whose own budget (the adapter's) is spent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.chat.flood import Pending, TokenBucket, plan_line
from bot.config.model import FloodConfig
from bot.delivery.outbox import Outbox
from bot.store.db import Store
from bot.store.leader import Leadership
from tests.support.chatfakes import Clock, RecordingChat

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL


def leading(epoch: int) -> Leadership:
    """A replica that holds the lease under `epoch`."""
    leadership = Leadership(lease_seconds=60.0)
    leadership.renewed(time.monotonic(), epoch)
    return leadership


async def _drain(outbox: Outbox) -> None:
    """Send until the budget says wait (or nothing is left)."""
    for _ in range(1000):
        wait = await outbox.drain_once()
        if wait is None or wait > 0:
            return
    raise AssertionError("outbox never settled")


async def _outbox(store_url: str, chat: RecordingChat, clock: Clock) -> tuple[Store, Outbox]:
    store = Store(store_url)
    await store.open()
    flood = FloodConfig(burst=4, per_second=0.5, coalesce=0)  # the window has its own test
    return store, Outbox(store, [chat], flood, clock=clock)


def test_token_bucket_burst_then_rate() -> None:
    b = TokenBucket(burst=4, per_second=0.5, now=0.0)
    assert [b.take(0.0) for _ in range(5)] == [True, True, True, True, False]
    assert b.wait_time(0.0) == 2.0
    assert b.take(2.0) and not b.take(2.5)


def test_plan_line_packs_announcements_but_not_replies() -> None:
    items = [Pending(1, "a" * 150), Pending(2, "b" * 150), Pending(3, "c" * 150)]
    text, ids = plan_line(items)
    assert ids == [1, 2] and text == "a" * 150 + " | " + "b" * 150
    text, ids = plan_line([*items, Pending(9, "reply", priority=1)])
    assert (text, ids) == ("reply", [9])


async def test_burst_is_limited_and_everything_arrives_once_in_order(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    store, outbox = await _outbox(store_url, chat, clock)
    for i in range(20):
        await outbox.enqueue("#ops", f"item{i:02d} " + "x" * 140)
    await _drain(outbox)
    assert len(chat.lines) == 4  # the burst
    clock.now += 2.0
    await _drain(outbox)
    assert len(chat.lines) == 5  # then one line per 2 s
    for _ in range(20):
        clock.now += 2.0
        await _drain(outbox)
    delivered = [part[:6] for _, line in chat.lines for part in line.split(" | ")]
    assert delivered == [f"item{i:02d}" for i in range(20)]
    assert await outbox.pending_count() == 0
    await store.close()


async def test_updates_coalesce_into_latest_state_and_finals_are_kept(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    chat.connected = False
    store, outbox = await _outbox(store_url, chat, clock)
    await outbox.enqueue("#ops", "pipeline 7 stage 1/3 build", key="p7")
    await outbox.enqueue("#ops", "pipeline 7 stage 2/3 test", key="p7")
    await outbox.enqueue("#ops", "pipeline 7 success", key="p7", final=True)
    await outbox.enqueue("#ops", "pipeline 7 retried: stage 1/3", key="p7")
    await outbox.enqueue("#ops", "pipeline 8 stage 1/3 build", key="p8")
    await _drain(outbox)
    assert chat.lines == []  # disconnected: kept queued
    chat.connected = True
    await _drain(outbox)
    sent = " | ".join(text for _, text in chat.lines)
    assert sent == "pipeline 7 success | pipeline 7 retried: stage 1/3 | pipeline 8 stage 1/3 build"
    await store.close()


async def test_replies_jump_the_queue(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    store, outbox = await _outbox(store_url, chat, clock)
    for i in range(6):
        await outbox.enqueue("#ops", f"announcement {i} " + "y" * 300)
    await outbox.enqueue("#ops", "status: all good", adapter="irc", priority=1)
    await outbox.drain_once()
    assert chat.lines[0] == ("#ops", "status: all good")
    await store.close()


async def test_a_reply_is_not_charged_to_the_rooms_budget(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    store, outbox = await _outbox(store_url, chat, clock)
    for i in range(6):
        await outbox.enqueue("#ops", f"announcement {i} " + "y" * 300)
    await _drain(outbox)
    assert len(chat.lines) == 4  # the room's burst is spent on announcements
    await outbox.enqueue("#ops", "bob: you are irc-host:bob", priority=1)
    await outbox.enqueue("#ops", "bob: builds-api toolsbeta: live 1.2", priority=1)
    await _drain(outbox)
    assert [text for _, text in chat.lines[4:]] == [
        "bob: you are irc-host:bob",
        "bob: builds-api toolsbeta: live 1.2",
    ]
    # the room's budget is untouched: the next announcement is due as before the replies
    assert await outbox.drain_once() == pytest.approx(2.0)
    await store.close()


async def test_nothing_is_planned_while_the_wire_is_busy_then_a_reply_goes_first(
    store_url: str,
) -> None:
    chat, clock = RecordingChat(), Clock()
    store, outbox = await _outbox(store_url, chat, clock)
    chat.wire_wait = 0.4  # the connection's budget was just spent (a deploy's lines)
    await outbox.enqueue("#ops", "deploy #3 diff: 1 resource changed")
    await outbox.enqueue("#builds", "builds-api #41 success")
    await outbox.enqueue("#dev", "bob: you are irc-host:bob", priority=1)
    assert await outbox.drain_once() == pytest.approx(0.4)
    assert chat.lines == []  # planned only when it can go at once: nothing waits in the adapter
    chat.wire_wait = 0.0
    await outbox.drain_once()
    assert chat.lines[0] == ("#dev", "bob: you are irc-host:bob")  # queued last, sent first
    await store.close()


async def test_queued_lines_survive_a_restart(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    chat.connected = False
    store, outbox = await _outbox(store_url, chat, clock)
    await outbox.enqueue("#ops", "deploy 12 done", key="d12", final=True)
    await store.close()
    chat.connected = True
    store, outbox = await _outbox(store_url, chat, clock)
    await _drain(outbox)
    assert chat.lines == [("#ops", "deploy 12 done")]
    await _drain(outbox)
    assert len(chat.lines) == 1  # sent once
    await store.close()


async def test_a_deposed_leader_sends_nothing_and_a_new_leader_starts_with_an_empty_bucket(
    store_url: str,
) -> None:
    chat, clock = RecordingChat(), Clock()
    store, _ = await _outbox(store_url, chat, clock)
    old = Outbox(store, [chat], FloodConfig(burst=4, per_second=0.5, coalesce=0), clock=clock,
                 leadership=leading(epoch=1))  # fmt: skip
    await old.enqueue("#ops", "deploy 12 done", key="d12", final=True)
    assert await old.drain_once() == 2.0  # a leader starts with an empty budget
    clock.now += 2.0
    await store.execute(
        "INSERT INTO leader_lease (name, holder, epoch, renewed_at, expires_at)"
        " VALUES ('deploybot', 'replica-b', 2, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
    )
    assert await old.drain_once() is None  # a newer leader holds the lease: not a word
    assert chat.lines == [] and await old.pending_count() == 1

    new = Outbox(store, [chat], FloodConfig(burst=4, per_second=0.5), clock=clock,
                 leadership=leading(epoch=2))  # fmt: skip
    assert await new.drain_once() == 2.0  # no burst: the old leader may have spent it
    clock.now += 2.0
    await _drain(new)
    assert chat.lines == [("#ops", "deploy 12 done")]
    await store.close()


def test_a_backlog_is_packed_in_short_forms_and_a_lone_item_in_full() -> None:
    url = " https://gitlab.example.org/repos/cloud/toolforge/builds-api/-/pipelines/"
    items = [
        Pending(
            i, f"builds-api: pipeline #{i} success in 3m{url}{i}", short=f"builds-api #{i} success"
        )
        for i in range(1, 31)
    ]
    text, ids = plan_line(items)
    assert len(ids) >= 10  # short forms: many finals per line
    assert "https://" not in text and text.startswith(
        "builds-api #1 success | builds-api #2 success"
    )
    text, ids = plan_line(items[:1])
    assert text == items[0].text and ids == [1]  # alone: the full line with its URL


async def test_a_line_for_a_room_nobody_serves_goes_to_the_default_room(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    store = Store(store_url)
    await store.open()
    flood = FloodConfig(burst=4, per_second=0.5, coalesce=0)  # the window has its own test
    outbox = Outbox(store, [chat], flood, clock=clock, default_room="#ops")
    try:
        await outbox.enqueue("ops@conference.example.org", "deploy #7 done", final=True)
        await _drain(outbox)
        assert chat.lines == [
            (
                "#ops",
                "deploy #7 done (for ops@conference.example.org: no chat connection serves it)",
            )
        ]
        # with no served default room either, the line waits instead of vanishing
        lost = Outbox(store, [chat], flood, clock=clock, default_room="ops@elsewhere.org")
        await lost.enqueue("ops@conference.example.org", "deploy #8 done", final=True)
        assert await lost.drain_once() == 30.0
        assert await lost.pending_count() == 1
    finally:
        await store.close()


async def test_fresh_announcements_wait_the_coalescing_window_replies_do_not(
    tmp_path: Path,
) -> None:
    chat, clock = RecordingChat(), Clock()
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    outbox = Outbox(store, [chat], FloodConfig(burst=4, coalesce=0.3), clock=clock)
    try:
        await outbox.enqueue("#ops", "builds-api #1 started", key="p1", short="#1 started")
        await outbox.enqueue("#ops", "a reply", priority=1)
        assert await outbox.drain_once() == pytest.approx(0.3)
        assert chat.lines == [("#ops", "a reply")]  # the reply did not wait
        clock.now += 0.2
        await outbox.enqueue("#ops", "builds-api #1 success", key="p1", final=True, short="#1 ok")
        assert await outbox.drain_once() == pytest.approx(0.1)
        clock.now += 0.1
        await _drain(outbox)
        # the burst's line shows the state that is current, not the stale "started"
        assert chat.lines[1:] == [("#ops", "builds-api #1 success")]
    finally:
        await store.close()


async def test_a_final_coalesced_while_its_row_is_being_sent_is_not_lost(store_url: str) -> None:
    chat, clock = RecordingChat(), Clock()
    store, outbox = await _outbox(store_url, chat, clock)
    sent = chat.send

    async def send_while_the_final_arrives(room: str, text: str, **_: object) -> None:
        await sent(room, text)
        if text.endswith("started"):  # the pipeline finishes while its line is on the wire
            await outbox.enqueue("#ops", "builds-api #1 success", key="p1", final=True)

    chat.send = send_while_the_final_arrives  # type: ignore[method-assign]
    try:
        await outbox.enqueue("#ops", "builds-api #1 started", key="p1")
        await _drain(outbox)
        assert [text for _, text in chat.lines] == [
            "builds-api #1 started",
            "builds-api #1 success",
        ]
    finally:
        await store.close()


async def test_a_lone_announcement_on_an_idle_connection_goes_at_once(tmp_path: Path) -> None:
    """The coalescing hold applies only while lines queue: the first line after a quiet spell
    is not held, the burst behind it is (and shows its latest state)."""
    chat, clock = RecordingChat(), Clock()
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    outbox = Outbox(store, [chat], FloodConfig(burst=4, coalesce=0.3), clock=clock)
    try:
        await outbox.enqueue("#ops", "builds-api #1 started", key="p1", short="#1 started")
        assert await outbox.drain_once() == 0.0  # sent at once, not held
        assert chat.lines == [("#ops", "builds-api #1 started")]
        clock.now += 0.05  # the same pipeline moves on at once: the connection is busy
        await outbox.enqueue("#ops", "builds-api #1 running", key="p1", short="#1 running")
        await outbox.enqueue("#ops", "builds-api #1 success", key="p1", final=True)
        assert await outbox.drain_once() == pytest.approx(0.3)
        assert len(chat.lines) == 1
        clock.now += 0.3
        await _drain(outbox)
        assert chat.lines[1:] == [("#ops", "builds-api #1 success")]
        clock.now += 5.0  # quiet again: the next pipeline's first line is not held
        await outbox.enqueue("#ops", "builds-api #2 started", key="p2", short="#2 started")
        await outbox.drain_once()
        assert chat.lines[2:] == [("#ops", "builds-api #2 started")]
    finally:
        await store.close()
