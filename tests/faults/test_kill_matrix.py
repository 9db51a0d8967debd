"""kill -9 at points across `!deploy` and `!apply`, then a restart on the same state: no
SAL entry lost (in the store, said in chat, or a commit on the remote without its entry), no
apply twice or unasked, no process of the killed bot left running, and the restarted bot
says what it found, naming the next command.

The points and the counting are `tests/support/killmatrix.py`. All 20 take about two
minutes on a 2-core machine, more than the suite's budget, so `make test` runs the nine
below (each kind of point, and every point that found a bug); `python -m bench kill_matrix`
runs all 20 and prints the figures (README, "Reliability").

Bugs these found: a push cut off by the crash that landed after the restart had looked was
never logged (the intent was dropped at once), and a `!deploy` killed after its pin change
was pushed but before its auto-apply started was not mentioned at all after the restart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.killmatrix import POINTS, Point, prepare_template, run_point

pytestmark = pytest.mark.faults
IN_SUITE = (
    "deploy: push in flight, lands after the restart",
    "deploy: push reached the remote",
    "deploy: bump SAL entry written, auto-apply preflight",
    "deploy: helm under helmfile runs",
    "deploy: sync exited, rollout watch",
    "deploy: SAL 'done'",
    "apply: preflight reads the cluster",
    "apply: SAL 'started'",
    "apply: helmfile sync runs",
)
CHOSEN = [p for p in POINTS if p.name in IN_SUITE]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's repositories, made once for every trial of this module."""
    return asyncio.run(prepare_template(tmp_path_factory.mktemp("killmatrix")))


def test_the_suite_runs_named_points() -> None:
    assert len(CHOSEN) == len(IN_SUITE) and len(POINTS) == 20


@pytest.mark.parametrize("point", CHOSEN, ids=[p.name for p in CHOSEN])
async def test_kill_9_at(point: Point, template: Path, tmp_path: Path) -> None:
    outcome = await run_point(tmp_path / "trial", template, point)
    assert outcome.problems() == [], outcome.figures()
