"""The chart tells the same availability story as the bot.

The default values rendered a config that `deploybot check-config` refused
(`http.auth.token_env: DEPLOYBOT_HTTP_TOKEN is not set`: nothing filled it); two replicas were
refused one missing need at a time; and nothing kept a standby through a node drain.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import ROOT, Helm, by_kind, one, require
from tests.support.real import deploybot

pytestmark = pytest.mark.faults

HA = {
    "replicaCount": 2,
    "store": {"url": "postgresql://deploybot@db.example.org:5432/deploybot"},
    "leaderElection": {"enabled": True},
    "persistence": {"enabled": False},
}


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(require("helm"), tmp_path_factory.mktemp("helm-home"))


def secret_variables(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The variables the pod gets from Secrets (what a cluster would fill), with values."""
    deploy = one(docs, "Deployment")
    env = deploy["spec"]["template"]["spec"]["containers"][0].get("env", [])
    return {
        e["name"]: f"value-of-{e['valueFrom']['secretKeyRef']['key']}"
        for e in env
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def test_default_values_render_a_config_check_config_accepts(helm: Helm, tmp_path: Path) -> None:
    docs = helm.template(None)
    config = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d.get("data", {}))
    path = tmp_path / "config.yaml"
    path.write_text(config["data"]["config.yaml"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYBOT_")}
    check = subprocess.run(
        [*deploybot(), "check-config", "-c", str(path)],
        capture_output=True, text=True, cwd=ROOT, env={**env, **secret_variables(docs)},
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert yaml.safe_load(path.read_text())["http"]["auth"]["token_env"] in secret_variables(docs)


def test_two_replicas_are_refused_in_one_message_naming_all_three_needs(helm: Helm) -> None:
    result = helm.template_result({"replicaCount": 2})
    assert result.returncode != 0
    message = [ln for ln in result.stderr.splitlines() if "replicaCount=2" in ln]
    assert len(message) == 1, result.stderr
    assert "store.url" in message[0]
    assert "leaderElection.enabled=true" in message[0]
    assert "ReadWriteOnce" in message[0]


def test_a_pod_disruption_budget_only_with_more_than_one_replica(helm: Helm) -> None:
    assert by_kind(helm.template(None), "PodDisruptionBudget") == []
    docs = helm.template(HA)
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    pod_labels = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
