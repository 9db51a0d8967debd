"""KubeCluster against FakeKube: the real `kubernetes` client does the HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes import client as k8s

from bot.cluster.kube import ClusterError, KubeCluster
from tests.support.fakes.kube import FakeKube, pod_json

NS = "tool-builds-api"


def cluster_for(url: str, *, timeout: float = 2.0, token: str | None = None) -> KubeCluster:
    cfg = k8s.Configuration(host=url)
    cfg.retries = 0  # as KubeCluster.from_kubeconfig does
    if token:
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    return KubeCluster(k8s.ApiClient(cfg), request_timeout=timeout, attempts=3, backoff=0.01)


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


@pytest.fixture
async def cluster(kube: FakeKube) -> AsyncIterator[KubeCluster]:
    c = cluster_for(kube.url)
    yield c
    c.close()


async def test_deployments_report_generation_replicas_and_helm_labels(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=2)
    kube.add_deployment(NS, "builds-worker", chart="builds-api", version="0.0.131", replicas=3)
    kube.start_rollout(NS, "builds-worker", version="0.0.132", ready_after_polls=None)

    states = {d.name: d for d in await cluster.deployments(NS)}

    api, worker = states["builds-api"], states["builds-worker"]
    assert (api.desired, api.updated, api.available, api.complete) == (2, 2, 2, True)
    assert api.labels["helm.sh/chart"] == "builds-api-0.0.131"
    assert api.labels["app.kubernetes.io/instance"] == "builds-api"
    assert worker.generation == 2 and worker.observed_generation == 2
    assert (worker.updated, worker.complete) == (0, False)
    assert worker.progress() == "builds-worker 0/3 updated, 3/3 available"


async def test_pods_expose_owner_and_waiting_reason(kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=1)
    kube.start_rollout(
        NS, "builds-api", version="0.0.132", failure=("ErrImagePull", "manifest unknown")
    )

    pods = await cluster.pods(NS)

    waiting = [p for p in pods if p.containers[0].waiting_reason == "ErrImagePull"]
    running = [p for p in pods if p.phase == "Running"]
    assert len(waiting) == 1 and len(running) == 1
    assert waiting[0].containers[0].image.endswith(":0.0.132")
    assert waiting[0].owner_replicaset and waiting[0].name.startswith(waiting[0].owner_replicaset)
    assert waiting[0].owner_replicaset != running[0].owner_replicaset


async def test_rollout_that_becomes_ready_is_ok(kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=3)

    result = await cluster.wait_rollout(NS, timeout=20, poll=0.01)

    assert result.ok, result.summary
    assert result.summary == "rollout complete: builds-api 2/2"
    deployment_polls = [r for r in kube.requests if r.endswith(f"/namespaces/{NS}/deployments")]
    assert len(deployment_polls) == 3


async def test_rollout_that_stays_unready_times_out_with_progress(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.add_deployment(NS, "other", chart="other", version="1.0.0")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)

    result = await cluster.wait_rollout(NS, timeout=0.3, poll=0.01)

    assert not result.ok
    assert result.summary == (
        "rollout not complete after 0.3s: builds-api 0/2 updated, 2/2 available"
    )


async def test_image_pull_backoff_fails_fast_quoting_the_reason(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    image = "harbor.example.org/toolforge/builds-api:0.0.132"
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=1)
    kube.start_rollout(
        NS,
        "builds-api",
        version="0.0.132",
        failure=("ImagePullBackOff", f'Back-off pulling image "{image}"'),
    )

    result = await asyncio.wait_for(cluster.wait_rollout(NS, timeout=60, poll=0.01), timeout=10)

    assert not result.ok
    pod = next(p for p in await cluster.pods(NS) if p.phase == "Pending").name
    assert result.summary == f'pod {pod}: ImagePullBackOff: Back-off pulling image "{image}"'


async def test_crashing_pod_of_an_old_replicaset_does_not_fail_the_rollout(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=1)
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=4)
    old_rs = {
        "metadata": {"name": "builds-api-0ld", "uid": "u1", "labels": {"pod-template-hash": "0ld"}}
    }
    kube.add_pod(
        NS, pod_json(NS, "builds-api-0ld-x", old_rs, "img:old", {"reason": "CrashLoopBackOff"})
    )

    result = await cluster.wait_rollout(NS, timeout=20, poll=0.01)

    assert result.ok, result.summary
    # ...while the monitor still reports it
    problems = await cluster.unhealthy_pods(NS)
    assert [p.describe() for p in problems] == ["pod builds-api-0ld-x: CrashLoopBackOff"]


async def test_unhealthy_pods_reports_restarts_over_threshold(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_pod(NS, pod_json(NS, "flappy", None, "img:1", restarts=12))
    kube.add_pod(NS, pod_json(NS, "calm", None, "img:1", restarts=1))

    problems = await cluster.unhealthy_pods(NS, restart_threshold=5)

    assert [(p.pod, p.reason, p.restarts) for p in problems] == [("flappy", "Restarting", 12)]


async def test_live_version_from_chart_labels(kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131+dev")
    kube.add_deployment(NS, "redis", chart="redis", version="17.0.0")

    assert await cluster.live_version(NS, "builds-api", "builds-api") == "0.0.131+dev"


async def test_live_version_reports_mixed_deployments(kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.add_deployment(
        NS, "builds-worker", chart="builds-api", version="0.0.131", release="builds-api"
    )
    kube.add_deployment(NS, "jobs-api", chart="jobs-api", version="0.0.131", release="jobs-api")
    kube.start_rollout(NS, "builds-worker", version="0.0.132", ready_after_polls=None)
    kube.start_rollout(NS, "jobs-api", version="0.0.132", ready_after_polls=None)

    live = await cluster.live_version(NS, "builds-api", "builds-api")

    assert live == "mixed: builds-api=0.0.131, builds-worker=0.0.132"


async def test_live_version_falls_back_to_the_newest_deployed_helm_record(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_helm_release(NS, "builds-api", 3, "builds-api", "0.0.130", status="superseded")
    kube.add_helm_release(NS, "builds-api", 4, "builds-api", "0.0.131", status="deployed")
    kube.add_helm_release(NS, "builds-api", 5, "builds-api", "0.0.132", status="failed")
    kube.add_helm_release(NS, "other", 9, "other", "9.9.9", status="deployed")

    record = await cluster.helm_release(NS, "builds-api")
    live = await cluster.live_version(NS, "builds-api", "builds-api")

    assert record is not None
    assert (record.revision, record.chart, record.chart_version, record.status) == (
        4,
        "builds-api",
        "0.0.131",
        "deployed",
    )
    assert live == "0.0.131"
    assert any("labelSelector=owner%3Dhelm%2Cname%3Dbuilds-api" in r for r in kube.requests)
    assert await cluster.helm_release(NS, "missing") is None


async def test_cluster_down_raises_one_line_error_without_token() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    c = cluster_for(f"http://127.0.0.1:{port}", token="s3cr3t-token")
    try:
        with pytest.raises(ClusterError) as err:
            await c.deployments(NS)
    finally:
        c.close()
    message = str(err.value)
    assert "\n" not in message and "s3cr3t" not in message
    assert f"127.0.0.1:{port}" in message and "failed 3 times" in message


async def test_server_errors_are_retried_then_reported(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.fail_next = 2
    assert [d.name for d in await cluster.deployments(NS)] == ["builds-api"]

    kube.fault = "error"
    with pytest.raises(ClusterError, match="HTTP 500"):
        await cluster.deployments(NS)


async def test_hanging_api_times_out(kube: FakeKube) -> None:
    kube.fault = "hang"
    c = cluster_for(kube.url, timeout=0.2)
    try:
        with pytest.raises(ClusterError, match="timed out"):
            await asyncio.wait_for(c.pods(NS), timeout=10)
    finally:
        c.close()


async def test_from_kubeconfig_uses_the_named_context(kube: FakeKube, tmp_path: Path) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""apiVersion: v1
kind: Config
clusters:
- name: beta
  cluster: {{server: "{kube.url}"}}
- name: prod
  cluster: {{server: "http://127.0.0.1:9"}}
users:
- name: bot
  user: {{token: s3cr3t}}
contexts:
- name: toolsbeta
  context: {{cluster: beta, user: bot}}
- name: tools
  context: {{cluster: prod, user: bot}}
current-context: tools
"""
    )
    c = KubeCluster.from_kubeconfig(str(kubeconfig), "toolsbeta")
    try:
        assert await c.live_version(NS, "builds-api", "builds-api") == "0.0.131"
    finally:
        c.close()
    with pytest.raises(ClusterError, match="nope"):
        KubeCluster.from_kubeconfig(str(kubeconfig), "nope")
