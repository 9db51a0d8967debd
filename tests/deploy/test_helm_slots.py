"""`cluster.max_parallel_helm`: three applies on one cluster with a limit of 2 — the third
waits for a helm slot, says so in the room, then runs once one of the first two finished.

The recording helmfile (tests/support/bin) holds each `helmfile apply` until the test
touches its ack file, so the test decides when a slot frees; `$FAKE_HELM_SPANS` records when
each run started and ended, so "never more than 2 at once" is measured, not assumed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.core.git import git
from bot.deploy.model import DeployRequest
from tests.support.deployworld import DeployBed, bed
from tests.support.poll import until
from tests.support.procs import most_at_once

__all__ = ["bed"]

WAIT_LINE = "waiting for a helm slot on the default kubeconfig: 2 runs in progress"


async def pinned(bed: DeployBed, component: str, env: str) -> str:
    suffix = ".yaml.gotmpl" if component == "jobs-api" else ".yaml"
    text = await git("show", f"main:components/{component}/values/{env}{suffix}",
                     cwd=bed.control_repo)  # fmt: skip
    return text.split("chartVersion:", 1)[1].split()[0]


async def test_a_third_apply_on_one_cluster_waits_for_a_helm_slot_and_says_so(
    bed: DeployBed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # toolsbeta and tools both talk to helm's default cluster (no kubeconfig or context of
    # their own): one cluster, so one limit for the three applies
    bed.data["cluster"] = {"max_parallel_helm": 2}
    for env in bed.data["environments"]:
        env.pop("kubeconfig", None)
        env.pop("kube_context", None)
    spans = tmp_path / "spans.jsonl"
    monkeypatch.setenv("FAKE_HELM_SPANS", str(spans))
    targets = [("builds-api", "toolsbeta"), ("builds-api", "tools"), ("jobs-api", "toolsbeta")]
    for component, env in targets:
        version = await pinned(bed, component, env)
        bed.registry.push_manifest(f"toolforge/{component}", version)
        chart = "toolforge-charts/builds-api" if component == "builds-api" else "toolforge/jobs-api"
        bed.registry.push_chart(chart, version)
    bed.script({"helmfile apply": {"ack": True}})
    outcomes: list[str] = []

    def applies() -> list[dict[str, Any]]:
        return [c for c in bed.records() if c["sub"] == "apply"]

    def ack(call: dict[str, Any]) -> None:
        Path(f"{bed.record}.ack-{call['pid']}").touch()

    async def three(app: App) -> None:
        deployer, console = app.deployer, app.console
        assert deployer is not None and console is not None
        runs = [
            asyncio.create_task(
                deployer.apply(DeployRequest(c, e, "console:alice", force=True))
            )  # --force: without a cluster each already "runs" its pin
            for c, e in targets
        ]
        said = console.stdout.getvalue  # type: ignore[attr-defined]
        # two applies hold both slots (each waits for its ack); the third deploy is queued
        await until(lambda: len(applies()) == 2 and WAIT_LINE in said(),
                    "two applies and a waiting line", every=0.02)  # fmt: skip
        running = {c["env"]["DEPLOYBOT_DEPLOY_ID"] for c in applies()}
        waiting = [ln for ln in said().splitlines() if WAIT_LINE in ln]
        third = next(i for i in ("1", "2", "3") if i not in running)
        assert any(ln.endswith(f"deploy #{third} {WAIT_LINE}") for ln in waiting), waiting
        assert app.services.helm_slots.most == {"~/.kube/config#": 2}

        ack(applies()[0])  # the first apply ends: its slot goes to the third
        await until(lambda: len(applies()) == 3, "the third apply", every=0.02)
        assert applies()[2]["env"]["DEPLOYBOT_DEPLOY_ID"] == third
        for call in applies()[1:]:
            ack(call)
        outcomes.extend(o.state for o in await asyncio.gather(*runs))

    s = await bed.run([], inspect=three)

    assert outcomes == ["done", "done", "done"]
    helm_runs = [json.loads(x) for x in spans.read_text().splitlines()]
    assert len(helm_runs) == 6  # a diff and an apply per deploy
    assert most_at_once(helm_runs) == 2
    assert [d["state"] for d in s.deploys] == ["done", "done", "done"]
