"""Property test of the planner's rules (issue 21, SPEC §15) over random histories, against
the demo's *simulated* cluster: live files and a Helm history file that the demo deploy
command (`bot.demo.deploycmd`) keeps, as `helm` would. The histories, the five invariants and
the oracle are in tests/support/planworld.py; the same histories run against the Kubernetes
fake in test_planner_properties_kube.py. This one covers what that cannot: environments with
no cluster (live state from a file, an emergency rollback where `helm rollback 0` picks the
revision) and the demo's own deploy command.

`FUZZ_EXAMPLES` sets the number of examples (`make fuzz` runs 5,000); the counts of checked
invariants are printed (run with -s).
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings

from tests.support.planworld import (
    ENVS,
    HISTORIES,
    PIN_AHEAD,
    C,
    Session,
    Step,
    World,
    environments,
    make_world,
    report,
    run_history,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
COUNTS: Counter[str] = Counter()


class LiveFiles:
    """The demo's simulated cluster: `<env>.yaml` (release -> version) and its history."""

    def __init__(self, world: World) -> None:
        self.dir = world.root / "demo" / "live"
        self.start = world.live_start

    def live(self, env: str) -> str | None:
        path = self.dir / f"{env}.yaml"
        return (yaml.safe_load(path.read_text()) or {}).get(C)

    def unapplied(self, world: World, env: str) -> bool | None:
        return None  # the unapplied check is not run over the live files here

    def ran(self, env: str) -> set[str]:
        path = self.dir / f"{env}.history.yaml"
        return set((yaml.safe_load(path.read_text()) or {}).get(C) or [])

    def reset(self) -> None:
        for env, version in self.start.items():
            (self.dir / f"{env}.yaml").write_text(yaml.safe_dump({C: version}))
            (self.dir / f"{env}.history.yaml").write_text(yaml.safe_dump({C: [version]}))

    def environments(self) -> list[dict[str, object]]:
        return environments(**{e: {"live_file": str(self.dir / f"{e}.yaml")} for e in ENVS})


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return asyncio.run(make_world(tmp_path_factory.mktemp("planner")))


async def one_history(world: World, steps: list[Step]) -> None:
    world.reset()
    files = LiveFiles(world)
    files.reset()
    data = {**world.data, "environments": files.environments()}
    await run_history(Session(world, files, data, COUNTS), steps)


@pytest.mark.timeout(max(900, EXAMPLES * 5))  # about 1.3 s an example on 2 cores
@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(steps=HISTORIES)
@example(steps=PIN_AHEAD)
def test_every_next_is_true_in_every_state(world: World, steps: list[Step]) -> None:
    asyncio.run(one_history(world, steps))


def test_zz_report_the_invariant_counts() -> None:
    """Prints how often each invariant was checked (run with -s); at least once each."""
    report(COUNTS, "simulated cluster")
