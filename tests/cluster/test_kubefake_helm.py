"""With FAKE_KUBE_APPLY, the helmfile/helm stand-ins (tests/support/bin) change the FakeKube
their kubeconfig names as the real tools change a cluster, and the bot's cluster client
(`KubeCluster`) reads the result: `helmfile sync`/`apply` writes a new Helm revision and rolls
the Deployment out, `helm rollback` returns to a revision as a new one (0: the one before
the newest), `helmfile diff` says whether the pin or the values differ from what is
deployed. The stand-ins still record every run."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cluster.kube import KubeCluster
from tests.support.fakes.kube import FakeKube

BIN = Path(__file__).parents[1] / "support" / "bin"
NS = REL = "builds-api"
pytestmark = pytest.mark.timeout(30)
HELMFILE = """\
repositories:
  - name: tools
    url: example.org/toolforge
releases:
  - name: builds-api
    namespace: builds-api
    chart: tools/builds-api
    version: {{ .Values.chartVersion }}
  - name: other
    namespace: other-ns
    chart: tools/other
"""


@pytest.fixture
async def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        fake.add_deployment(NS, REL, chart=REL, version="0.0.1")
        fake.add_helm_release(NS, REL, 1, REL, "0.0.1", config={"values": "old"})
        monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_HELM_RECORD", str(tmp_path / "calls.jsonl"))
        monkeypatch.setenv("FAKE_KUBE_APPLY", "1")
        monkeypatch.delenv("FAKE_HELM_CONTROL", raising=False)
        comp = tmp_path / "components" / REL
        (comp / "values").mkdir(parents=True)
        (comp / "helmfile.yaml").write_text(HELMFILE)
        yield fake


def pin(tmp: Path, version: str, replicas: int = 2) -> None:
    values = tmp / "components" / REL / "values" / "toolsbeta.yaml"
    values.write_text(f"chartVersion: {version}\napi:\n  replicas: {replicas}\n")


async def run(tmp: Path, *argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


def helmfile(sub: str, *more: str) -> list[str]:
    """The helmfile argv for builds-api (its selector: `other` is never installed)."""
    return ["helmfile", "-e", "toolsbeta", "--file", f"components/{REL}/helmfile.yaml", sub,
            *more, "--selector", f"name={REL}"]  # fmt: skip


async def history(cluster: KubeCluster) -> list[tuple[int, str, str]]:
    cluster.forget()
    return [(r.revision, r.chart_version, r.status) for r in await cluster.helm_history(NS, REL)]


async def test_apply_rollback_and_diff_change_and_read_the_fake_cluster(
    kube: FakeKube, tmp_path: Path
) -> None:
    cluster = KubeCluster.from_kubeconfig(os.environ["KUBECONFIG"], None)
    try:
        pin(tmp_path, "0.0.2")
        assert (await run(tmp_path, *helmfile("diff", "--detailed-exitcode")))[0] == 2
        code, out = await run(tmp_path, *helmfile("diff", "--detailed-exitcode")[:-2])
        assert code == 2 and "other-ns, other, Deployment (apps) has changed:" in out
        code, out = await run(tmp_path, *helmfile("sync", "--wait"))
        assert code == 0, out
        assert await history(cluster) == [(1, "0.0.1", "superseded"), (2, "0.0.2", "deployed")]
        assert await cluster.live_version(NS, REL, REL) == "0.0.2"
        rollout = await cluster.wait_rollout(NS, timeout=5)
        assert rollout.ok, rollout.summary
        assert kube.helm_history("other-ns", "other") == []  # not selected

        code, out = await run(tmp_path, *helmfile("diff", "--detailed-exitcode"))
        assert (code, out) == (0, ""), "the pin and values are what runs"
        pin(tmp_path, "0.0.2", replicas=3)  # a config-only change
        code, out = await run(tmp_path, *helmfile("diff", "--detailed-exitcode"))
        assert code == 2 and f"{NS}, {REL}, Deployment (apps) has changed:" in out
        code, out = await run(tmp_path, *helmfile("apply", "--wait"))
        assert code == 0, out  # `apply` is `sync` here
        assert (await history(cluster))[-1] == (3, "0.0.2", "deployed")
        assert kube.deployment_version(NS, REL) == "0.0.2"

        code, out = await run(tmp_path, "helm", "rollback", REL, "1", "-n", NS, "--wait")
        assert code == 0, out
        assert (await history(cluster))[-2:] == [
            (3, "0.0.2", "superseded"),
            (4, "0.0.1", "deployed"),
        ]
        assert await cluster.live_version(NS, REL, REL) == "0.0.1"
        assert kube.helm_history(NS, REL)[-1]["config"] == {"values": "old"}
        assert (await cluster.wait_rollout(NS, timeout=5)).ok

        # revision 0: the one before the newest (here the newer release, as helm does)
        assert (await run(tmp_path, "helm", "rollback", REL, "0", "-n", NS, "--wait"))[0] == 0
        assert (await history(cluster))[-1] == (5, "0.0.2", "deployed")
        code, out = await run(tmp_path, "helm", "rollback", REL, "9", "-n", NS, "--wait")
        assert (code, out.strip()) == (1, "Error: release has no 9 version")
        assert (await history(cluster))[-1] == (5, "0.0.2", "deployed")  # unchanged
    finally:
        await cluster.close()
    calls = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [c["sub"] for c in calls] == [
        "diff", "diff", "sync", "diff", "diff", "apply", "rollback", "rollback", "rollback",
    ]  # fmt: skip
