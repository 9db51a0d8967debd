"""The planner never advises taking a release to an environment where it (or a newer one)
is acked as deliberately not deployed; every other step is untouched (pure, any state)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bot.model.ancestry import Direction
from bot.model.planner import plan_version
from bot.model.state import EnvFacts, Offered
from bot.store.acks import Ack

ENVS = ("toolsbeta", "tools")


def v(n: int) -> str:
    return f"0.0.{n}-202611{n % 28 + 1:02d}120000-{n:08x}"


ns = st.integers(130, 140)


@given(
    version=ns,
    pinned=st.tuples(ns, ns),
    running=st.tuples(ns, ns),
    acked=st.tuples(st.none() | ns, st.none() | ns),
)
def test_no_step_takes_a_release_where_it_is_acked(
    version: int, pinned: tuple[int, int], running: tuple[int, int],
    acked: tuple[int | None, int | None],
) -> None:  # fmt: skip
    facts = {}
    for i, env in enumerate(ENVS):
        ack = Ack("builds-api", env, v(a), "local only", "alice") if (a := acked[i]) else None
        move = Direction.FORWARD if pinned[i] > running[i] else Direction.SAME
        facts[env] = EnvFacts(
            "builds-api", env, v(pinned[i]), v(running[i]), True, move,
            Offered(frozenset({v(running[i])}), "live"),
            requires="toolsbeta" if env == "tools" else None, ack=ack,
        )  # fmt: skip
    contains = {env: running[i] >= version for i, env in enumerate(ENVS)}
    advice = plan_version("builds-api", v(version), contains, facts, ENVS)
    held = [e for i, e in enumerate(ENVS) if acked[i] is not None and version <= acked[i]]
    target = advice.command.split()[-1] if advice.command else None  # `… to <env>`, `… <env>`
    assert target not in held, advice
    first = next((e for e in ENVS if not contains[e]), None)
    if first in held:  # the path stops where the ack is, and says so
        assert advice.held and advice.command is None and "acked" in advice.text
    if not held:
        assert not advice.held
