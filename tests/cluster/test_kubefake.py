"""FakeKube's watches, resourceVersions, StatefulSets, DaemonSets, Deployment conditions and
Leases, driven by the real `kubernetes` client (sync, in threads, and `kubernetes.aio`) through
a kubeconfig."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.aio import client as ak8s
from kubernetes.aio import config as ak8s_config
from kubernetes.aio import watch as ak8s_watch
from kubernetes.client.exceptions import ApiException
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from tests.support.fakes.kube import FakeKube

NS = "tool-builds-api"
pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


@pytest.fixture
def api(kube: FakeKube, tmp_path: Path) -> Iterator[k8s.ApiClient]:
    """The sync client, configured from a kubeconfig that points at the fake."""
    api_client = k8s_config.new_client_from_config(
        config_file=str(kube.kubeconfig(tmp_path / "kubeconfig")), persist_config=False
    )
    yield api_client
    api_client.close()


@pytest.fixture
async def aapi(kube: FakeKube, tmp_path: Path) -> AsyncIterator[ak8s.ApiClient]:
    """The asyncio client (`kubernetes.aio`), from the same kind of kubeconfig."""
    api_client = await ak8s_config.new_client_from_config(
        config_file=str(kube.kubeconfig(tmp_path / "kubeconfig-aio")), persist_config=False
    )
    yield api_client
    await api_client.close()


class ThreadWatch:
    """`kubernetes.watch.Watch().stream(...)` in a thread, its events handed to the loop."""

    def __init__(self, func: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.watch = k8s_watch.Watch()
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        self._thread = threading.Thread(target=self._run, args=(func, args, kwargs), daemon=True)
        self._thread.start()

    def _run(self, func: Callable[..., Any], args: Any, kwargs: Any) -> None:
        try:
            for event in self.watch.stream(func, *args, _request_timeout=20, **kwargs):
                self._loop.call_soon_threadsafe(self.events.put_nowait, event)
        except BaseException as e:  # handed to the test
            self.error = e
        finally:
            self._loop.call_soon_threadsafe(self._done.set)

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def finished(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._done.wait(), timeout)
        self._thread.join(timeout)

    async def stop(self, kube: FakeKube) -> None:
        self.watch.stop()
        kube.drop_watches()  # the stream ends; the client sees it was stopped
        await self.finished()


def _summary(event: dict[str, Any]) -> tuple[str, str, int | None]:
    obj = event["object"]
    return event["type"], obj.metadata.name, obj.status.updated_replicas


# --- resourceVersion ----------------------------------------------------------------------


async def test_every_change_gets_a_newer_resource_version(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    apps = k8s.AppsV1Api(api)
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")

    first = await asyncio.to_thread(apps.list_namespaced_deployment, NS)
    again = await asyncio.to_thread(apps.list_namespaced_deployment, NS)
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    changed = await asyncio.to_thread(apps.read_namespaced_deployment, "builds-api", NS)
    listed = await asyncio.to_thread(apps.list_namespaced_deployment, NS)

    assert first.metadata.resource_version == again.metadata.resource_version  # no change
    assert first.items[0].metadata.resource_version == again.items[0].metadata.resource_version
    assert int(changed.metadata.resource_version) > int(first.items[0].metadata.resource_version)
    assert int(listed.metadata.resource_version) >= int(changed.metadata.resource_version)
    assert listed.metadata.resource_version == str(kube.resource_version)
    pods = await asyncio.to_thread(k8s.CoreV1Api(api).list_namespaced_pod, NS)
    assert all(int(p.metadata.resource_version) <= kube.resource_version for p in pods.items)


# --- watches, sync client -----------------------------------------------------------------


async def test_sync_watch_sends_added_then_modified_and_deleted(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    watch = ThreadWatch(k8s.AppsV1Api(api).list_namespaced_deployment, NS)

    assert _summary(await watch.next()) == ("ADDED", "builds-api", 2)
    await kube.wait_for_watches(1)
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    modified = await watch.next()
    kube.finish_rollout(NS, "builds-api")
    done = await watch.next()
    kube.delete(NS, "deployments", "builds-api")
    deleted = await watch.next()
    await watch.stop(kube)

    assert _summary(modified) == ("MODIFIED", "builds-api", 0)
    assert modified["object"].metadata.generation == 2
    assert _summary(done) == ("MODIFIED", "builds-api", 2)
    assert deleted["type"] == "DELETED"
    versions = [int(e["object"].metadata.resource_version) for e in (modified, done, deleted)]
    assert versions == sorted(versions) and len(set(versions)) == 3


async def test_pod_watch_sees_new_pods_come_and_old_ones_go(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=1)
    watch = ThreadWatch(k8s.CoreV1Api(api).list_namespaced_pod, NS)
    first = await watch.next()
    await kube.wait_for_watches(1)

    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=1)
    new_pod = await watch.next()
    kube.tick(NS)  # one Deployment controller step, as a poll of the Deployment would do
    settled = {
        (e["type"], e["object"].metadata.name) for e in [await watch.next(), await watch.next()]
    }
    await watch.stop(kube)

    def waiting(event: dict[str, Any]) -> str | None:
        state = event["object"].status.container_statuses[0].state
        return state.waiting.reason if state.waiting else None

    assert (first["type"], waiting(first)) == ("ADDED", None)
    assert (new_pod["type"], waiting(new_pod)) == ("ADDED", "ContainerCreating")
    assert new_pod["object"].spec.containers[0].image.endswith(":0.0.132")
    assert settled == {
        ("DELETED", first["object"].metadata.name),
        ("MODIFIED", new_pod["object"].metadata.name),
    }


async def test_sync_watch_honours_timeout_seconds(kube: FakeKube, api: k8s.ApiClient) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    loop = asyncio.get_running_loop()
    started = loop.time()

    watch = ThreadWatch(k8s.AppsV1Api(api).list_namespaced_deployment, NS, timeout_seconds=1)
    await watch.finished(timeout=10)

    assert watch.error is None
    assert 0.9 <= loop.time() - started < 8
    assert (await watch.next())["type"] == "ADDED"
    assert kube.open_watches == 0


async def test_sync_watch_resumes_after_a_drop_without_losing_a_change(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    watch = ThreadWatch(k8s.AppsV1Api(api).list_namespaced_deployment, NS)
    added = await watch.next()
    await kube.wait_for_watches(1)

    # the stream ends before this change is written to it: only a resumed watch can see it
    kube.drop_watches()
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)

    resumed = await watch.next()
    await kube.wait_for_watches(2, started=True)
    await watch.stop(kube)

    assert _summary(resumed) == ("MODIFIED", "builds-api", 0)
    last_seen = added["object"].metadata.resource_version
    watches = [r for r in kube.requests if "watch=true" in r]
    assert len(watches) >= 2
    assert f"resourceVersion={last_seen}" in watches[1]
    assert watch.events.empty()  # nothing replayed twice


async def test_sync_watch_cut_mid_stream_raises_and_resumes_by_hand(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    apps = k8s.AppsV1Api(api)
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    watch = ThreadWatch(apps.list_namespaced_deployment, NS)
    await watch.next()
    await kube.wait_for_watches(1)

    kube.drop_watches(abort=True)
    await watch.finished()
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)

    assert watch.error is not None  # urllib3 ProtocolError: the client must resume itself
    since = watch.watch.resource_version
    resumed = ThreadWatch(apps.list_namespaced_deployment, NS, resource_version=since)
    assert _summary(await resumed.next()) == ("MODIFIED", "builds-api", 0)
    await resumed.stop(kube)


async def test_sync_watch_from_a_compacted_version_is_410_then_relist_works(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    apps = k8s.AppsV1Api(api)
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    old = (await asyncio.to_thread(apps.list_namespaced_deployment, NS)).metadata.resource_version
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    kube.compact()

    expired = ThreadWatch(
        apps.list_namespaced_deployment, NS, resource_version=old, timeout_seconds=5
    )
    await expired.finished()
    assert isinstance(expired.error, ApiException)
    assert expired.error.status == 410 and "Expired" in str(expired.error.reason)

    fresh = (await asyncio.to_thread(apps.list_namespaced_deployment, NS)).metadata
    watch = ThreadWatch(
        apps.list_namespaced_deployment, NS, resource_version=fresh.resource_version
    )
    await kube.wait_for_watches(1)
    kube.finish_rollout(NS, "builds-api")
    assert _summary(await watch.next()) == ("MODIFIED", "builds-api", 2)
    await watch.stop(kube)


async def test_expired_watch_as_an_error_event_or_an_http_410(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    kube.compact()
    apps = k8s.AppsV1Api(api)

    def raw_watch() -> tuple[int, bytes]:
        resp = apps.list_namespaced_deployment(
            NS, watch=True, resource_version="1", timeout_seconds=2, _preload_content=False
        )
        try:
            return resp.status, resp.data
        finally:
            resp.release_conn()

    status, body = await asyncio.to_thread(raw_watch)
    event = json.loads(body.splitlines()[0])
    assert status == 200  # kube-apiserver's watch cache: a 200 stream with one ERROR event
    assert event["type"] == "ERROR"
    assert (event["object"]["code"], event["object"]["reason"]) == (410, "Expired")

    kube.expired_as = "status"
    with pytest.raises(ApiException) as gone:
        await asyncio.to_thread(raw_watch)
    assert gone.value.status == 410
    assert json.loads(gone.value.body)["reason"] == "Expired"


# --- StatefulSets, DaemonSets, Deployment status -------------------------------------------


async def test_statefulset_rollout_with_a_partition(kube: FakeKube, api: k8s.ApiClient) -> None:
    apps = k8s.AppsV1Api(api)
    kube.add_statefulset(NS, "builds-db", chart="builds-db", version="1.0", replicas=3)
    watch = ThreadWatch(apps.list_namespaced_stateful_set, NS)
    assert (await watch.next())["type"] == "ADDED"
    await kube.wait_for_watches(1)

    kube.start_statefulset_rollout(NS, "builds-db", version="1.1", partition=1)
    started = (await watch.next())["object"]
    kube.advance_statefulset(NS, "builds-db", pods=5)  # stops at the partition
    partial = (await watch.next())["object"]
    await watch.stop(kube)

    assert started.metadata.generation == 2 and started.status.observed_generation == 2
    assert started.status.update_revision != started.status.current_revision
    assert started.status.updated_replicas is None  # 0 is left out, as the API server does
    assert started.spec.update_strategy.rolling_update.partition == 1
    assert (partial.status.replicas, partial.status.updated_replicas) == (3, 2)
    assert partial.status.current_revision != partial.status.update_revision

    kube.update_statefulset(NS, "builds-db", partition=0)
    kube.advance_statefulset(NS, "builds-db")
    done = await asyncio.to_thread(apps.read_namespaced_stateful_set, "builds-db", NS)
    assert done.status.updated_replicas == done.status.ready_replicas == 3
    assert done.status.current_revision == done.status.update_revision
    pods = await asyncio.to_thread(k8s.CoreV1Api(api).list_namespaced_pod, NS)
    assert {p.spec.containers[0].image.rsplit(":", 1)[1] for p in pods.items} == {"1.1"}
    assert {p.metadata.owner_references[0].kind for p in pods.items} == {"StatefulSet"}


async def test_statefulset_with_a_failing_new_pod(kube: FakeKube, api: k8s.ApiClient) -> None:
    kube.add_statefulset(NS, "builds-db", chart="builds-db", version="1.0", replicas=2)
    kube.start_statefulset_rollout(
        NS, "builds-db", version="1.1", failure=("CrashLoopBackOff", "back-off 10s")
    )
    kube.advance_statefulset(NS, "builds-db")

    sts = await asyncio.to_thread(k8s.AppsV1Api(api).read_namespaced_stateful_set, "builds-db", NS)
    pods = await asyncio.to_thread(k8s.CoreV1Api(api).list_namespaced_pod, NS)

    assert (sts.status.ready_replicas, sts.status.updated_replicas) == (1, 1)
    waiting = {
        p.metadata.name: p.status.container_statuses[0].state.waiting
        for p in pods.items
        if p.status.container_statuses[0].state.waiting
    }
    assert list(waiting) == ["builds-db-1"]  # the highest ordinal goes first
    assert waiting["builds-db-1"].reason == "CrashLoopBackOff"


async def test_daemonset_status_through_a_rollout(kube: FakeKube, api: k8s.ApiClient) -> None:
    apps = k8s.AppsV1Api(api)
    kube.add_daemonset(NS, "log-agent", chart="log-agent", version="2.0", nodes=3)
    watch = ThreadWatch(
        apps.list_namespaced_daemon_set, NS, label_selector="helm.sh/chart=log-agent-2.0"
    )
    added = (await watch.next())["object"]
    await kube.wait_for_watches(1)
    kube.start_daemonset_rollout(
        NS, "log-agent", version="2.1", failure=("ImagePullBackOff", "manifest unknown")
    )
    left = await watch.next()  # 2.1 no longer matches the selector
    await watch.stop(kube)

    kube.advance_daemonset(NS, "log-agent", pods=1)
    ds = await asyncio.to_thread(apps.read_namespaced_daemon_set, "log-agent", NS)
    pods = await asyncio.to_thread(k8s.CoreV1Api(api).list_namespaced_pod, NS)

    assert added.status.desired_number_scheduled == added.status.number_available == 3
    # as kube-apiserver does: DELETED with the last matching content, at the new version
    assert left["type"] == "DELETED"
    assert left["object"].metadata.labels["helm.sh/chart"] == "log-agent-2.0"
    assert int(left["object"].metadata.resource_version) > int(added.metadata.resource_version)
    assert ds.metadata.generation == ds.status.observed_generation == 2
    assert (ds.status.desired_number_scheduled, ds.status.updated_number_scheduled) == (3, 1)
    assert (ds.status.number_available, ds.status.number_unavailable) == (2, 1)
    reasons = [
        p.status.container_statuses[0].state.waiting.reason
        for p in pods.items
        if p.status.container_statuses[0].state.waiting
    ]
    assert reasons == ["ImagePullBackOff"]
    assert len({p.spec.node_name for p in pods.items}) == 3


async def test_deployment_progress_deadline_and_terminating_old_replicas(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131", replicas=2)
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)

    kube.exceed_progress_deadline(NS, "builds-api")
    stuck = await asyncio.to_thread(apps.read_namespaced_deployment, "builds-api", NS)
    progressing = {c.type: c for c in stuck.status.conditions}["Progressing"]
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")

    kube.finish_rollout(NS, "builds-api", terminating=1)
    done = await asyncio.to_thread(apps.read_namespaced_deployment, "builds-api", NS)
    pods = await asyncio.to_thread(core.list_namespaced_pod, NS)
    assert (done.status.replicas, done.status.updated_replicas) == (3, 2)
    assert {c.type: c.reason for c in done.status.conditions}["Progressing"] == (
        "NewReplicaSetAvailable"
    )
    leaving = [p for p in pods.items if p.metadata.deletion_timestamp]
    assert [p.spec.containers[0].image.rsplit(":", 1)[1] for p in leaving] == ["0.0.131"]

    kube.update_deployment(NS, "builds-api", terminating=0)
    settled = await asyncio.to_thread(apps.read_namespaced_deployment, "builds-api", NS)
    assert settled.status.replicas == settled.status.updated_replicas == 2


# --- Leases -------------------------------------------------------------------------------


def _lease(name: str, holder: str, rv: str | None = None, duration: int = 15) -> k8s.V1Lease:
    return k8s.V1Lease(
        metadata=k8s.V1ObjectMeta(name=name, resource_version=rv),
        spec=k8s.V1LeaseSpec(holder_identity=holder, lease_duration_seconds=duration),
    )


async def test_lease_create_replace_patch_with_optimistic_concurrency(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    leases = k8s.CoordinationV1Api(api)

    created = await asyncio.to_thread(leases.create_namespaced_lease, NS, _lease("bot", "a"))
    with pytest.raises(ApiException) as exists:
        await asyncio.to_thread(leases.create_namespaced_lease, NS, _lease("bot", "b"))
    assert exists.value.status == 409
    assert json.loads(exists.value.body)["reason"] == "AlreadyExists"

    stale = created.metadata.resource_version
    same = await asyncio.to_thread(
        leases.replace_namespaced_lease, "bot", NS, _lease("bot", "a", rv=stale)
    )
    assert same.metadata.resource_version == stale  # a no-op update keeps the version
    renewed = await asyncio.to_thread(
        leases.replace_namespaced_lease, "bot", NS, _lease("bot", "a", rv=stale, duration=20)
    )
    assert int(renewed.metadata.resource_version) > int(stale)
    assert renewed.metadata.uid == created.metadata.uid

    with pytest.raises(ApiException) as conflict:
        await asyncio.to_thread(
            leases.replace_namespaced_lease, "bot", NS, _lease("bot", "b", rv=stale)
        )
    status = json.loads(conflict.value.body)
    assert conflict.value.status == 409
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "Conflict", 409)
    assert "the object has been modified" in status["message"]

    patched = await asyncio.to_thread(
        leases.patch_namespaced_lease, "bot", NS, {"spec": {"holderIdentity": "c"}}
    )
    assert patched.spec.holder_identity == "c"
    with pytest.raises(ApiException) as stale_patch:
        await asyncio.to_thread(
            leases.patch_namespaced_lease,
            "bot",
            NS,
            {"metadata": {"resourceVersion": stale}, "spec": {"holderIdentity": "d"}},
        )
    assert stale_patch.value.status == 409
    json_patched = await asyncio.to_thread(
        leases.patch_namespaced_lease,
        "bot",
        NS,
        [{"op": "replace", "path": "/spec/holderIdentity", "value": "e"}],
    )
    assert json_patched.spec.holder_identity == "e"
    assert (kube.lease(NS, "bot") or {})["spec"]["holderIdentity"] == "e"

    await asyncio.to_thread(leases.delete_namespaced_lease, "bot", NS)
    with pytest.raises(ApiException) as gone:
        await asyncio.to_thread(leases.read_namespaced_lease, "bot", NS)
    assert gone.value.status == 404


async def test_another_holder_takes_the_lease_and_a_stale_renewal_conflicts(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    leases = k8s.CoordinationV1Api(api)
    kube.add_lease(NS, "deploybot-leader", holder="bot-a")
    mine = await asyncio.to_thread(leases.read_namespaced_lease, "deploybot-leader", NS)

    kube.update_lease(NS, "deploybot-leader", holderIdentity="bot-b", leaseTransitions=1)

    mine.spec.renew_time = None
    with pytest.raises(ApiException) as conflict:
        await asyncio.to_thread(leases.replace_namespaced_lease, "deploybot-leader", NS, mine)
    assert conflict.value.status == 409
    now = await asyncio.to_thread(leases.read_namespaced_lease, "deploybot-leader", NS)
    assert (now.spec.holder_identity, now.spec.lease_transitions) == ("bot-b", 1)


async def test_kubernetes_leaselock_loses_a_race_on_a_stale_lease(
    kube: FakeKube, api: k8s.ApiClient
) -> None:
    """The client library's own Lease lock (used by its leader election) against the fake."""

    def lock(identity: str) -> LeaseLock:
        held = LeaseLock("deploybot-leader", NS, identity)
        held.api_instance = k8s.CoordinationV1Api(api)
        return held

    a, b = lock("bot-a"), lock("bot-b")
    record = LeaderElectionRecord("bot-a", "15", "2024-01-01 00:00:00", "2024-01-01 00:00:00")

    assert await asyncio.to_thread(a.create, "deploybot-leader", NS, record)
    assert not await asyncio.to_thread(b.create, "deploybot-leader", NS, record)  # 409
    found, seen_by_b = await asyncio.to_thread(b.get, "deploybot-leader", NS)
    assert found and seen_by_b.holder_identity == "bot-a"
    renewal = LeaderElectionRecord("bot-a", "15", "2024-01-01 00:00:00", "2024-01-01 00:00:10")
    assert await asyncio.to_thread(a.update, "deploybot-leader", NS, renewal)

    takeover = LeaderElectionRecord("bot-b", "15", "2024-01-01 00:00:20", "2024-01-01 00:00:20")
    assert not await asyncio.to_thread(b.update, "deploybot-leader", NS, takeover)  # stale
    assert (kube.lease(NS, "deploybot-leader") or {})["spec"]["holderIdentity"] == "bot-a"


async def test_lease_watch_by_field_selector(kube: FakeKube, api: k8s.ApiClient) -> None:
    kube.add_lease(NS, "other", holder="x")
    kube.add_lease(NS, "deploybot-leader", holder="bot-a")
    watch = ThreadWatch(
        k8s.CoordinationV1Api(api).list_namespaced_lease,
        NS,
        field_selector="metadata.name=deploybot-leader",
    )
    added = await watch.next()
    await kube.wait_for_watches(1)
    kube.update_lease(NS, "other", holderIdentity="y")
    kube.update_lease(NS, "deploybot-leader", holderIdentity="bot-b")
    modified = await watch.next()
    await watch.stop(kube)

    assert (added["type"], added["object"].spec.holder_identity) == ("ADDED", "bot-a")
    assert (modified["type"], modified["object"].spec.holder_identity) == ("MODIFIED", "bot-b")
    assert watch.events.empty()


# --- the asyncio client -------------------------------------------------------------------


async def test_aio_watch_added_modified_and_resume_after_drop(
    kube: FakeKube, aapi: ak8s.ApiClient
) -> None:
    apps = ak8s.AppsV1Api(aapi)
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def consume() -> None:
        async with ak8s_watch.Watch() as watch:
            async for event in watch.stream(apps.list_namespaced_deployment, NS):
                await events.put(event)

    task = asyncio.create_task(consume())
    try:
        added = await asyncio.wait_for(events.get(), 5)
        await kube.wait_for_watches(1)
        kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
        modified = await asyncio.wait_for(events.get(), 5)
        kube.drop_watches()  # the aio Watch reconnects from its last resourceVersion
        kube.finish_rollout(NS, "builds-api")
        resumed = await asyncio.wait_for(events.get(), 5)
        await kube.wait_for_watches(2, started=True)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    assert _summary(added) == ("ADDED", "builds-api", 2)
    assert _summary(modified) == ("MODIFIED", "builds-api", 0)
    assert _summary(resumed) == ("MODIFIED", "builds-api", 2)
    watches = [r for r in kube.requests if "watch=true" in r]
    assert f"resourceVersion={modified['object'].metadata.resource_version}" in watches[1]


async def test_aio_watch_from_a_compacted_version_raises_410(
    kube: FakeKube, aapi: ak8s.ApiClient
) -> None:
    apps = ak8s.AppsV1Api(aapi)
    kube.add_deployment(NS, "builds-api", chart="builds-api", version="0.0.131")
    old = (await apps.list_namespaced_deployment(NS)).metadata.resource_version
    kube.start_rollout(NS, "builds-api", version="0.0.132", ready_after_polls=None)
    kube.compact()

    with pytest.raises(ak8s.exceptions.ApiException) as gone:
        async with ak8s_watch.Watch() as watch:
            stream = watch.stream(
                apps.list_namespaced_deployment, NS, resource_version=old, timeout_seconds=5
            )
            async for _ in stream:
                pass
    assert gone.value.status == 410

    kube.expired_as = "status"
    with pytest.raises(ak8s.exceptions.ApiException) as status:
        await apps.list_namespaced_deployment(NS, watch=True, resource_version=old)
    assert status.value.status == 410


async def test_aio_lease_conflict_on_a_stale_replace(kube: FakeKube, aapi: ak8s.ApiClient) -> None:
    leases = ak8s.CoordinationV1Api(aapi)
    body = ak8s.V1Lease(
        metadata=ak8s.V1ObjectMeta(name="bot"), spec=ak8s.V1LeaseSpec(holder_identity="a")
    )
    created = await leases.create_namespaced_lease(NS, body)
    kube.update_lease(NS, "bot", holderIdentity="b")

    with pytest.raises(ak8s.exceptions.ApiException) as conflict:
        await leases.replace_namespaced_lease("bot", NS, created)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    with pytest.raises(ak8s.exceptions.ApiException) as exists:
        await leases.create_namespaced_lease(NS, body)
    assert exists.value.status == 409
