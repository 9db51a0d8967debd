"""KubeCluster against FakeKube: the real `kubernetes.aio` client does the HTTP."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, urlsplit

import pytest
from kubernetes.aio import client as k8s

from bot.cluster.kube import ClusterError, KubeCluster, RolloutResult
from bot.cluster.rollout import Releases
from bot.cluster.watch import KINDS
from tests.support.fakes.kube import FakeKube, pod_json

NS = "tool-builds-api"


def cluster_for(url: str, *, timeout: float = 2.0, token: str | None = None) -> KubeCluster:
    cfg = k8s.Configuration(host=url)
    if token:
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
    return KubeCluster(
        k8s.ApiClient(configuration=cfg), request_timeout=timeout, attempts=3, backoff=0.01
    )


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


@pytest.fixture
async def cluster(kube: FakeKube) -> AsyncIterator[KubeCluster]:
    c = cluster_for(kube.url)
    # a warm client (kubeconfig read, TLS context made), and 1 s rollout budgets where a test
    # waits for one to run out: five lists must be answered first, on a busy machine too
    await c.api()
    yield c
    await c.close()


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


async def rollout_in_background(
    cluster: KubeCluster, timeout: float = 20
) -> asyncio.Task[RolloutResult]:
    return asyncio.create_task(cluster.wait_rollout(NS, timeout=timeout))


async def test_rollout_completes_when_the_watch_sees_it_done(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))
    kube.tick(NS)
    assert not task.done()

    kube.finish_rollout(NS, "builds-api")
    result = await asyncio.wait_for(task, 10)

    assert result.ok, result.summary
    assert result.summary == "rollout complete: builds-api 2/2"
    assert len(deployment_lists(kube)) == 1  # one list, then the watch: no polling


async def test_old_replicas_still_terminating_are_not_done(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))

    kube.finish_rollout(NS, "builds-api", terminating=1)
    await kube.wait_for_watches(len(KINDS))
    with pytest.raises(TimeoutError):  # every new replica is available, one old one is not gone
        await asyncio.wait_for(asyncio.shield(task), 0.5)
    kube.update_deployment(NS, "builds-api", terminating=0)
    result = await asyncio.wait_for(task, 10)

    assert result.ok and result.summary == "rollout complete: builds-api 2/2"


async def test_still_terminating_at_the_deadline_says_so(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    kube.finish_rollout(NS, "builds-api", terminating=2)

    result = await cluster.wait_rollout(NS, timeout=1)

    assert not result.ok
    assert result.summary == (
        "rollout not complete after 1s: builds-api 2/2 updated, 2/2 available,"
        " 2 old replicas still terminating"
    )


async def test_progress_deadline_exceeded_fails_with_the_reason(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    task = await rollout_in_background(cluster, timeout=60)
    await kube.wait_for_watches(len(KINDS))

    kube.exceed_progress_deadline(NS, "builds-api")
    result = await asyncio.wait_for(task, 10)

    assert not result.ok
    assert result.summary.startswith("builds-api: ProgressDeadlineExceeded: ReplicaSet ")
    assert result.summary.endswith(" has timed out progressing.")


async def test_statefulset_rollout_waits_for_revision_and_partition(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_statefulset(NS, "db", chart="db", version="1.0.0", replicas=3)
    kube.start_statefulset_rollout(NS, "db", version="1.1.0")
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))
    kube.advance_statefulset(NS, "db", pods=2)
    await kube.wait_for_watches(len(KINDS))
    assert not task.done()

    kube.advance_statefulset(NS, "db", pods=1)  # every pod updated: currentRevision moves
    result = await asyncio.wait_for(task, 10)
    assert result.ok and result.summary == "rollout complete: statefulset db 3/3"

    # a partitioned rollout is done once the pods from the partition up are updated
    kube.start_statefulset_rollout(NS, "db", version="1.2.0", partition=2)
    partial = await cluster.wait_rollout(NS, timeout=1)
    assert partial.summary == (
        "rollout not complete after 1s: statefulset db 0/1 updated (partition 2), 3/3 ready"
    )
    kube.advance_statefulset(NS, "db", pods=1)
    done = await cluster.wait_rollout(NS, timeout=10)
    assert done.ok and done.summary == "rollout complete: statefulset db 1/1 (partition 2)"


async def test_statefulset_pod_that_cannot_pull_fails_fast(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_statefulset(NS, "db", chart="db", version="1.0.0", replicas=2)
    kube.start_statefulset_rollout(
        NS, "db", version="1.1.0", failure=("ErrImagePull", "manifest unknown")
    )
    kube.advance_statefulset(NS, "db", pods=1)

    result = await asyncio.wait_for(cluster.wait_rollout(NS, timeout=60), 10)

    assert not result.ok and result.summary == "pod db-1: ErrImagePull: manifest unknown"


async def test_daemonset_rollout_waits_for_updated_and_available(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_daemonset(NS, "agent", chart="agent", version="1.0.0", nodes=3)
    kube.start_daemonset_rollout(NS, "agent", version="1.1.0")
    kube.advance_daemonset(NS, "agent", pods=2)
    partial = await cluster.wait_rollout(NS, timeout=1)
    assert partial.summary == (
        "rollout not complete after 1s: daemonset agent 2/3 updated, 3/3 available"
    )
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))

    kube.advance_daemonset(NS, "agent", pods=1)
    result = await asyncio.wait_for(task, 10)

    assert result.ok and result.summary == "rollout complete: daemonset agent 3/3"


async def test_daemonset_pod_crashing_fails_fast(kube: FakeKube, cluster: KubeCluster) -> None:
    kube.add_daemonset(NS, "agent", chart="agent", version="1.0.0", nodes=2)
    kube.start_daemonset_rollout(NS, "agent", version="1.1.0", failure=("CrashLoopBackOff", ""))
    task = await rollout_in_background(cluster, timeout=60)
    await kube.wait_for_watches(len(KINDS))

    kube.advance_daemonset(NS, "agent", pods=1)
    result = await asyncio.wait_for(task, 10)

    assert not result.ok
    assert result.summary.startswith("pod agent-") and result.summary.endswith(": CrashLoopBackOff")


def _query(request: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(request).query).items()}


def deployment_lists(kube: FakeKube) -> list[str]:
    return [r for r in kube.requests if r.endswith(f"/namespaces/{NS}/deployments")]


async def test_a_dropped_watch_resumes_from_its_resource_version(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))

    assert kube.drop_watches(abort=True) == len(KINDS)  # cut mid-stream
    kube.finish_rollout(NS, "builds-api")  # while nobody watches
    result = await asyncio.wait_for(task, 10)

    assert result.ok, result.summary
    watches = [_query(r) for r in kube.requests if "/deployments?" in r and "watch=true" in r]
    assert len(watches) == 2  # nothing changed before the drop: it resumes where it started
    assert watches[1]["resourceVersion"] == watches[0]["resourceVersion"]
    assert len(deployment_lists(kube)) == 1  # resumed, not listed again


@pytest.mark.parametrize("expired_as", ["event", "status"])
async def test_an_expired_resource_version_lists_again(
    kube: FakeKube, cluster: KubeCluster, expired_as: Literal["event", "status"]
) -> None:
    kube.expired_as = expired_as  # an ERROR event in the stream, or an HTTP 410 answer
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))

    kube.drop_watches()
    kube.finish_rollout(NS, "builds-api")
    kube.compact()  # the change is gone from the history: resuming answers 410 Gone
    result = await asyncio.wait_for(task, 15)

    assert result.ok, result.summary
    assert len(deployment_lists(kube)) >= 2  # listed again (a slow machine may list once more)


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

    result = await asyncio.wait_for(cluster.wait_rollout(NS, timeout=60), timeout=10)

    assert not result.ok
    pod = next(p for p in await cluster.pods(NS) if p.phase == "Pending").name
    assert result.summary == f'pod {pod}: ImagePullBackOff: Back-off pulling image "{image}"'


async def test_crashing_pod_of_an_old_replicaset_does_not_fail_the_rollout(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=1)
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    old_rs = {
        "metadata": {"name": "builds-api-0ld", "uid": "u1", "labels": {"pod-template-hash": "0ld"}}
    }
    kube.add_pod(
        NS, pod_json(NS, "builds-api-0ld-x", old_rs, "img:old", {"reason": "CrashLoopBackOff"})
    )
    task = await rollout_in_background(cluster)
    await kube.wait_for_watches(len(KINDS))

    kube.finish_rollout(NS, "builds-api")
    result = await asyncio.wait_for(task, 10)

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
    selectors = [parse_qs(urlsplit(r).query).get("labelSelector") for r in kube.requests]
    assert ["owner=helm"] in selectors  # Helm's own label: one list serves every release
    assert await cluster.helm_release(NS, "missing") is None


async def test_release_state_is_the_newest_record_with_the_last_deployed(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_helm_release(NS, "builds-api", 4, "builds-api", "0.0.131", status="deployed")
    kube.add_helm_release(NS, "builds-api", 5, "builds-api", "0.0.132", status="pending-upgrade")

    state = await cluster.release_state(NS, "builds-api")

    assert state is not None and state.in_trouble and state.status == "pending-upgrade"
    assert state.describe() == (
        "helm release builds-api pending-upgrade at revision 5 (0.0.132);"
        " last deployed: revision 4 (0.0.131)"
    )
    assert state.next_step("builds-api", "tools") == (
        f"!rollback builds-api tools --emergency (or helm rollback builds-api 4 -n {NS})"
    )
    kube.add_helm_release(NS, "jobs-api", 1, "jobs-api", "0.0.1", status="failed")
    never = await cluster.release_state(NS, "jobs-api")
    assert never is not None and never.describe().endswith("; never deployed")
    assert never.next_step("jobs-api", "tools") == (
        f"helm uninstall jobs-api -n {NS}, then !apply jobs-api tools"
    )
    kube.add_helm_release(NS, "builds-api", 6, "builds-api", "0.0.131", status="deployed")
    healthy = await cluster.release_state(NS, "builds-api")
    assert healthy is not None and not healthy.in_trouble
    assert await cluster.release_state(NS, "missing") is None


async def test_cluster_down_raises_one_line_error_without_token() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    c = cluster_for(f"http://127.0.0.1:{port}", token="s3cr3t-token")
    try:
        with pytest.raises(ClusterError) as err:
            await c.deployments(NS)
    finally:
        await c.close()
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


async def test_a_failing_api_fails_fast_until_it_answers_again(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    """A monitor round over many namespaces of a cluster whose API is down must not pay the
    retries' backoff for every namespace: after one call failed all its attempts, the next
    calls try once, until the API answers again."""
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.fault = "error"
    with pytest.raises(ClusterError, match="failed 3 times"):
        await cluster.pods(NS)
    before = len(kube.requests)
    with pytest.raises(ClusterError, match="HTTP 500.*failing, not retried"):
        await cluster.pods("other-namespace")
    assert len(kube.requests) == before + 1

    kube.fault = None
    assert [d.name for d in await cluster.deployments(NS)] == ["builds-api"]
    kube.fail_next = 2  # a blip after the recovery is retried again
    assert len(await cluster.pods(NS)) == 2


async def test_hanging_api_times_out(kube: FakeKube) -> None:
    kube.fault = "hang"
    c = cluster_for(kube.url, timeout=0.2)
    try:
        with pytest.raises(ClusterError, match="timed out"):
            await asyncio.wait_for(c.pods(NS), timeout=10)
    finally:
        await c.close()


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
        await c.close()
    with pytest.raises(ClusterError, match="nope"):
        KubeCluster.from_kubeconfig(str(kubeconfig), "nope")


@pytest.mark.parametrize("cluster_scope", [True, False])
async def test_many_namespaces_are_read_in_one_list_per_kind(
    kube: FakeKube, cluster: KubeCluster, cluster_scope: bool
) -> None:
    """Questions about 20 namespaces asked together cost one Deployments list and one list of
    Helm's records; an API refusing the cluster scope (namespaced RBAC) is asked once per
    namespace, with the same answers."""
    kube.forbid_cluster_wide = not cluster_scope
    names = [f"c{i:02d}" for i in range(20)]
    for name in names:
        kube.add_deployment(name, name, chart=name, version="0.0.7")
        kube.add_helm_release(name, name, 1, name, "0.0.7", status="deployed")
    kube.add_helm_release("elsewhere", "c00", 1, "c00", "9.9.9", status="deployed")
    kube.requests.clear()

    lives = await asyncio.gather(*(cluster.live_version(n, n, n) for n in names))
    states = await asyncio.gather(*(cluster.release_state(n, n) for n in names))

    assert lives == ["0.0.7"] * 20
    assert [s.deployed.chart_version if s and s.deployed else None for s in states] == (
        ["0.0.7"] * 20
    )
    if cluster_scope:
        assert sorted(urlsplit(r).path for r in kube.requests) == [
            "/api/v1/secrets",
            "/apis/apps/v1/deployments",
        ]
    else:  # one refused try per kind, then each namespace once per kind
        assert len(kube.requests) == 2 + 2 * 20


async def test_a_neighbour_stuck_in_image_pull_does_not_fail_this_rollout(
    kube: FakeKube, cluster: KubeCluster
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.add_deployment(NS, "jobs-api", chart="jobs-api", version="0.0.409")
    kube.start_rollout(NS, "jobs-api", version="0.0.410", ready_after_polls=None,
                       failure=("ImagePullBackOff", "Back-off pulling image"))  # fmt: skip
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    mine = asyncio.create_task(
        cluster.wait_rollout(NS, timeout=10, releases=Releases(frozenset({"builds-api"})))
    )
    await kube.wait_for_watches(len(KINDS))
    assert not mine.done()

    kube.finish_rollout(NS, "builds-api")
    result = await asyncio.wait_for(mine, 10)

    assert result.ok, result.summary
    assert result.summary == "rollout complete: builds-api 2/2"
    theirs = await cluster.wait_rollout(NS, timeout=5, releases=Releases(frozenset({"jobs-api"})))
    assert not theirs.ok
    assert theirs.summary.startswith("pod jobs-api-") and "ImagePullBackOff" in theirs.summary
