"""Property test of the planner's rules (issue 21, SPEC §15) over random histories, against
the Kubernetes fake with Helm history: the same histories and invariants as
test_planner_properties.py (tests/support/planworld.py), but each environment is a cluster.

local, toolsbeta and tools are three FakeKubes (tests/support/fakes/kube.py), each reached
through a real kubeconfig (`kubeconfig` and `kube_context` of the environment). The bot runs
its default deploy commands (`helmfile ... diff`, `helmfile ... sync`/`apply`, `helm
rollback <release> <revision>`), and the stand-ins in tests/support/bin, with
FAKE_KUBE_APPLY set, change the fake cluster as the real tools would: an apply writes a new
Helm release Secret revision (the pinned chart version, the values file as its values) and
rolls the Deployment out to that version; `helm rollback` returns to the revision's version
and values as a new revision; `helmfile diff` compares the pin and values with the deployed
revision. So the bot's rollout watch, its live version (the Deployment's chart label), the
emergency rollback's choice from Helm's history and the unapplied check by `helmfile diff`
(run after every step) all read the fake cluster. The oracle reads what runs from the fake's
Deployment, independently of the bot.

`FUZZ_EXAMPLES` sets the number of examples; the counts of checked invariants are printed (run
with -s). The default is 40, not 100: an example costs about 4 s of CPU here (three API
servers, a helm/helmfile process per deploy step and per unapplied diff), so 40 keep this test
near 3 minutes on an idle 2-core machine; with the 100 of the simulated-cluster test `make
test` runs 140 histories. `make fuzz` runs 5,000 of each.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings

from tests.support.fakes.kube import FakeKube
from tests.support.planworld import (
    ENVS,
    HISTORIES,
    PIN_AHEAD,
    C,
    Session,
    Step,
    World,
    environments,
    git,
    make_world,
    report,
    run_history,
)

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
COUNTS: Counter[str] = Counter()
BIN = Path(__file__).parents[1] / "support" / "bin"
NS = C  # the demo's namespace and Helm release of builds-api
CHART = C


class Clusters:
    """One FakeKube per environment; what runs is the fake's Deployment's version."""

    def __init__(self, kubes: dict[str, FakeKube]) -> None:
        self.kubes = kubes

    def live(self, env: str) -> str | None:
        return self.kubes[env].deployment_version(NS, C)

    def ran(self, env: str) -> set[str]:
        return {r["chart"]["metadata"]["version"] for r in self.kubes[env].helm_history(NS, C)}

    def unapplied(self, world: World, env: str) -> bool:
        """main's values file (with its pin) differs from the deployed revision's values."""
        deployed = [r for r in self.kubes[env].helm_history(NS, C)
                    if r["info"]["status"] == "deployed"]  # fmt: skip
        main = git(world.control, "show", f"main:components/{C}/values/{env}.yaml") + "\n"
        return not deployed or deployed[-1]["config"].get("values") != main


def kubeconfig(path: Path, env: str, url: str) -> str:
    """A kubeconfig (JSON, which is YAML: the stand-ins read it with the standard library)
    whose context `env` points at the environment's fake."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": env, "cluster": {"server": url}}],
        "users": [{"name": "deploybot", "user": {"token": "fake-token"}}],
        "contexts": [{"name": env, "context": {"cluster": env, "user": "deploybot"}}],
        "current-context": env,
    }
    path.write_text(json.dumps(doc))
    return str(path)


@asynccontextmanager
async def clusters(world: World) -> AsyncIterator[tuple[Clusters, list[dict[str, Any]]]]:
    """Three fakes at the start of a history: each runs the start version, installed as Helm
    revision 1 with the values file of the start (local with an older version in it)."""
    async with AsyncExitStack() as stack:
        kubes = {env: await stack.enter_async_context(FakeKube()) for env in ENVS}
        extra = {}
        for env, kube in kubes.items():
            version = world.live_start[env]
            values = world.values_at_start(env)
            values = re.sub(r"chartVersion: \S+", f"chartVersion: {version}", values)
            kube.add_deployment(NS, C, chart=CHART, version=version)
            kube.add_helm_release(NS, C, 1, CHART, version, config={"values": values})
            path = kubeconfig(world.root / f"kubeconfig-{env}", env, kube.url)
            extra[env] = {"kubeconfig": path, "kube_context": env}
        yield Clusters(kubes), environments(**extra)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    made = asyncio.run(make_world(tmp_path_factory.mktemp("planner-kube")))
    made.data.pop("demo", None)  # real deploy commands: no "nothing was deployed" notes
    made.data["deploy"] = {"timeout": 60, "rollout_timeout": 10}  # the default commands
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        mp.setenv("FAKE_HELM_RECORD", str(made.root / "helm-calls.jsonl"))
        mp.setenv("FAKE_KUBE_APPLY", "1")
        mp.delenv("FAKE_HELM_CONTROL", raising=False)
        yield made


async def one_history(world: World, steps: list[Step]) -> None:
    world.reset()
    (world.root / "helm-calls.jsonl").unlink(missing_ok=True)
    async with clusters(world) as (live, envs):
        data = {**world.data, "environments": envs}
        await run_history(Session(world, live, data, COUNTS), steps, unapplied=True)


@pytest.mark.timeout(max(900, EXAMPLES * 10))  # about 4 s an example on 2 cores
@settings(
    max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(steps=HISTORIES)
@example(steps=PIN_AHEAD)
def test_every_next_is_true_in_every_state_on_the_kubernetes_fake(
    world: World, steps: list[Step]
) -> None:
    asyncio.run(one_history(world, steps))


def test_zz_report_the_invariant_counts() -> None:
    """Prints how often each invariant was checked (run with -s); at least once each."""
    report(COUNTS, "Kubernetes fake with Helm history")
