"""The restart monitor's decision over random histories (hypothesis): hand edits, the bot's
own deploys, old ReplicaSets garbage-collected, monitor rounds. Whatever the order, a rollout
nobody deployed is announced exactly once if any round saw it after the first look, a
rollout made during a deploy never, and what was there at the first look never. The store
is modelled by the remembered set (`tests/monitors/test_restarts.py` shows it survives a
restart of the bot)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.cluster.rollouts import Rollout
from bot.monitors.restarts import SKEW, Window, news
from tests.support.examples import examples

OPS = st.sampled_from(["edit", "deploy", "check", "gc"])


def rollout(n: int, at: float) -> Rollout:
    return Rollout(
        "ReplicaSet", f"rs/app-{n}", "app", f"app-{n}", n, datetime.fromtimestamp(at, UTC)
    )


@settings(max_examples=examples(300), deadline=None)
@given(before=st.integers(0, 3), ops=st.lists(OPS, max_size=25))
def test_each_restart_nobody_deployed_is_announced_once(before: int, ops: list[str]) -> None:
    clock = 1_000_000.0
    cluster: list[Rollout] = [rollout(n, clock - 5000) for n in range(before)]
    windows: list[Window] = []
    by_hand: set[str] = set()
    seen: set[str] | None = None  # None: the first look has not happened
    announced: Counter[str] = Counter()
    visible_after_first: set[str] = set()
    for op in [*ops, "check"]:
        clock += 10 * SKEW
        n = len(by_hand) + len(windows) + before
        if op == "edit":
            cluster.append(rollout(n, clock))
            by_hand.add(f"rs/app-{n}")
        elif op == "deploy":
            windows.append((clock, clock + 30))
            cluster.append(rollout(n, clock + 15))
        elif op == "gc" and cluster:
            cluster.pop(0)  # the oldest ReplicaSet goes (revisionHistoryLimit)
        elif op == "check":
            if seen is None:
                seen = {r.key for r in cluster}
                continue
            visible_after_first |= {r.key for r in cluster if r.key not in seen}
            fresh, say = news(seen, cluster, windows, clock)
            seen |= {r.key for r in fresh}
            announced.update(r.key for r in say)
    assert all(count == 1 for count in announced.values()), announced
    assert set(announced) == by_hand & visible_after_first
