"""The live feed's fan-out: a page that stops reading never slows the announcer, loses its
oldest events and is told to re-read; a reconnecting page gets what it missed."""

from __future__ import annotations

from bot.delivery.announcer import Announced
from bot.delivery.feed import QUEUE_SIZE, RECENT, Feed


def said(n: int, component: str | None = "builds-api") -> Announced:
    return Announced(f"line {n}", component, f"k{n}", False, "#ops", float(n))


def test_a_stalled_page_is_told_to_resync_and_never_blocks_publishing() -> None:
    feed = Feed()
    stalled, reading = feed.subscribe(), feed.subscribe()
    for n in range(QUEUE_SIZE + 20):
        feed.publish(said(n))
        got = reading.get_nowait()  # this page keeps up
        assert got is not None and got.data["text"] == f"line {n}"
    assert stalled.qsize() <= QUEUE_SIZE
    events = [stalled.get_nowait() for _ in range(stalled.qsize())]
    kinds = [e.kind for e in events if e is not None]
    assert "resync" in kinds
    last = events[-1]
    assert last is not None and last.data["text"] == f"line {QUEUE_SIZE + 19}"  # newest kept


def test_reconnect_replays_what_was_missed_and_close_ends_streams() -> None:
    feed = Feed()
    for n in range(RECENT + 5):
        feed.publish(said(n, component="jobs-api" if n % 2 else "builds-api"))
    missed = feed.missed("50")
    assert [e.id for e in missed] == list(range(51, RECENT + 6))
    assert feed.missed(None) == [] and feed.missed("x") == []
    latest = feed.latest_by_component()
    assert latest["jobs-api"].text == f"line {RECENT + 3}"
    assert latest["builds-api"].text == f"line {RECENT + 4}"
    queue = feed.subscribe()
    feed.close()
    assert queue.get_nowait() is None
