"""The outbox's rule for states of one thing, over random histories: what reaches the room
never shows an older state of a thing after a newer one, never drops a distinct state (each
of a deploy's steps, every final), and keeps an action's steps in the order they happened;
and no line is longer than one IRC message, whatever is queued."""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.config.model import FloodConfig
from bot.core.text import LINE_BYTES
from bot.delivery.outbox import Outbox
from bot.store.db import Store
from tests.support.chatfakes import Clock, RecordingChat
from tests.support.examples import examples

ROOM = "#ops"
DEPLOY_STEPS = ("start", "diff", "brings", "done")  # done: the final, key without a step
PIPELINE_STAGES = 3  # stage 1..3 replace each other, then a final


@dataclass
class Thing:
    """A deploy (distinct steps) or a pipeline (states of one key that replace each other)."""

    name: str
    deploy: bool
    emitted: list[tuple[str, int]] = field(default_factory=list)  # (key, global seq)

    def next_state(self) -> tuple[str, bool] | None:
        """(key, final) of this thing's next state, None when it has ended."""
        n = len(self.emitted)
        if self.deploy:
            if n >= len(DEPLOY_STEPS):
                return None
            step = DEPLOY_STEPS[n]
            return (self.name if step == "done" else f"{self.name}#{step}"), step == "done"
        if n > PIPELINE_STAGES:
            return None
        return self.name, n == PIPELINE_STAGES


events = st.lists(
    st.one_of(
        st.tuples(st.just("emit"), st.integers(0, 3)),
        st.tuples(st.just("drain"), st.just(0)),
        st.tuples(st.just("tick"), st.integers(1, 3)),
        st.tuples(st.just("down"), st.just(0)),
        st.tuples(st.just("up"), st.just(0)),
    ),
    max_size=40,
)


async def _drain(outbox: Outbox, clock: Clock) -> None:
    for _ in range(200):
        wait = await outbox.drain_once()
        if wait is None:
            return
        clock.now += max(wait, 0.1)
    raise AssertionError("the outbox never emptied")


async def _run(history: list[tuple[str, int]], pad: int, directory: Path) -> list[str]:
    """Play `history` through a real outbox on a rate-limited chat; return the items sent
    (packed lines split), with `Thing`s' expected states checked by the caller."""
    store = Store(f"sqlite:///{directory / 's.sqlite3'}")
    await store.open()
    chat, clock = RecordingChat(), Clock()
    outbox = Outbox(store, [chat], FloodConfig(burst=2, per_second=0.5, coalesce=0), clock=clock)
    things = [Thing("deploy:1", True), Thing("deploy:2", True), Thing("pipeline:7", False),
              Thing("pipeline:8", False)]  # fmt: skip
    seq = 0
    try:
        for kind, arg in history:
            if kind == "emit":
                thing = things[arg]
                state = thing.next_state()
                if state is None:
                    continue
                key, final = state
                seq += 1
                thing.emitted.append((key, seq))
                said = f"{key} s{seq:03d}" + (" failed" if final and arg % 2 else "")
                await outbox.enqueue(ROOM, f"{said} " + "x" * pad, key=key, final=final,
                                     short=said)  # fmt: skip
            elif kind == "drain" and chat.connected:
                await outbox.drain_once()
            elif kind == "tick":
                clock.now += arg
            else:
                chat.connected = kind == "up"
        chat.connected = True
        await _drain(outbox, clock)
    finally:
        await store.close()
    for _, line in chat.lines:
        assert len(f"PRIVMSG {ROOM} :{line}".encode()) <= LINE_BYTES, line
    sent = [" ".join(item.split()[:2]) for _, line in chat.lines for item in line.split(" | ")]
    _check(things, sent)
    return sent


def _check(things: list[Thing], sent: list[str]) -> None:
    seen = [(item.split()[0], int(item.split()[1][1:])) for item in sent]
    assert len(seen) == len(set(seen)), f"a state said twice: {sent}"
    for thing in things:
        mine = [(key, s) for key, s in seen if key.split("#")[0] == thing.name]
        seqs = [s for _, s in mine]
        # never an older state of a thing after a newer one (nor an older step)
        assert seqs == sorted(seqs), f"{thing.name} out of order: {sent}"
        if thing.deploy:  # every step is its own state: none dropped
            assert mine == thing.emitted, f"{thing.name} lost a step: {sent}"
        elif thing.emitted:  # a pipeline's latest state (its final, if any) is always said
            assert mine and mine[-1] == thing.emitted[-1], f"{thing.name}: {sent}"


@settings(max_examples=examples(30), deadline=None)
@given(history=events, pad=st.sampled_from([0, 120, 380, 900]))
@example(  # a failed deploy queued while chat is down: its steps packed, failure not first
    history=[("down", 0), ("emit", 2), *[("emit", 1)] * 4, ("emit", 3), ("up", 0)], pad=0
)
def test_states_reach_the_room_in_order_and_none_is_dropped(
    history: list[tuple[str, int]], pad: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(_run(history, pad, Path(directory)))


def test_a_deploys_start_is_not_replaced_by_its_result() -> None:
    """The case from the issue: start, diff, brings and done queued while chat is down."""
    history = [("down", 0), *[("emit", 0)] * 4, ("up", 0)]
    with tempfile.TemporaryDirectory() as directory:
        sent = asyncio.run(_run(history, 50, Path(directory)))
    assert [item.split()[0] for item in sent] == [
        "deploy:1#start", "deploy:1#diff", "deploy:1#brings", "deploy:1",
    ]  # fmt: skip
