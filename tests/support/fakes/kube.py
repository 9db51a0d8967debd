"""A small Kubernetes API server fake that the official client talks to over HTTP.

It serves the few endpoints the bot reads in the real JSON shapes: Deployments, ReplicaSets,
StatefulSets, DaemonSets (`apps/v1`), Pods and Secrets (`v1`) with list, get and watch, and
Leases (`coordination.k8s.io/v1`) with list, get, watch, create, replace, patch and delete.
It can be scripted: a rollout that completes after K polls or never, a new pod stuck in
ImagePullBackOff, a Deployment past its progress deadline, old replicas still terminating,
StatefulSet/DaemonSet rollouts step by step, another holder taking a Lease, added latency,
and 500/hang faults. It does what `helm upgrade` and `helm rollback` do to a cluster
(`helm_upgrade`, `helm_rollback`: a new release Secret revision, the release's Deployments
rolled out), also over HTTP for the helm/helmfile stand-ins in tests/support/bin
(`POST /_fake/helm/upgrade`, `POST /_fake/helm/rollback`, test control only).

Like the real API server it keeps one cluster-wide, monotonically increasing
`resourceVersion`: every change of an object gets the next one (also on the object) and every
list answers with the current one. Watches (`?watch=true`) stream newline-delimited
`{"type": "ADDED"|"MODIFIED"|"DELETED", "object": {...}}` events: without `resourceVersion`
(or with "0") first an ADDED per current object, with one every change after it; they end
after `timeoutSeconds`. `drop_watches()` cuts open watches (clients resume from their last
resourceVersion); after `compact()` an older resourceVersion answers 410 Gone (reason
Expired) as an ERROR event in a 200 stream, as kube-apiserver's watch cache does, or with
`expired_as = "status"` as an HTTP 410 Status.

Objects change only when a test calls a helper or when the bot polls: a list or get of
Deployments is one controller step (`tick`) for the Deployments of that namespace. Helpers
must be called from the event loop the fake runs in.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import gzip
import hashlib
import json
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from aiohttp import web

Fault = Literal["error", "hang"]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]

_T0 = "2024-01-01T00:00:00Z"  # every fixed timestamp: rendering must be deterministic


def helm_release_secret(
    namespace: str,
    release: str,
    revision: int,
    chart: str,
    version: str,
    status: str = "deployed",
    *,
    config: dict[str, Any] | None = None,
    description: str = "Upgrade complete",
) -> dict[str, Any]:
    """A `v1` Secret encoded exactly like Helm 3's secret storage driver writes it; `config`
    is the record's user-supplied values."""
    record = {
        "name": release,
        "namespace": namespace,
        "version": revision,
        "info": {"status": status, "description": description},
        "chart": {"metadata": {"name": chart, "version": version, "appVersion": version}},
        "config": config or {},
        "manifest": "",
    }
    helm_string = base64.b64encode(gzip.compress(json.dumps(record).encode()))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "helm.sh/release.v1",
        "metadata": {
            "name": f"sh.helm.release.v1.{release}.v{revision}",
            "namespace": namespace,
            "labels": {
                "name": release,
                "owner": "helm",
                "status": status,
                "version": str(revision),
            },
        },
        "data": {"release": base64.b64encode(helm_string).decode()},
    }


@dataclass
class _Deployment:
    namespace: str
    name: str
    replicas: int
    chart: str
    version: str
    image: str
    instance: str
    generation: int = 1
    revision: int = 1
    ready: bool = True
    ready_after_polls: int | None = None  # None: stays unready
    failure: tuple[str, str] | None = None  # waiting (reason, message) of new pods
    polls: int = 0
    old: tuple[int, str] | None = None  # (revision, image) being replaced
    previous: tuple[int, str] | None = None  # (revision, image) before the last rollout
    terminating: int = 0  # old pods still terminating after the rollout completed
    deadline_exceeded: bool = False  # Progressing=False, reason ProgressDeadlineExceeded
    image_digest: str | None = None  # what the pods of `image` pulled (their imageID)
    managed: list[dict[str, Any]] = field(default_factory=list)  # metadata.managedFields
    created: dict[int, str] = field(default_factory=dict)  # revision -> its RS's creation


@dataclass
class _StatefulSet:
    namespace: str
    name: str
    chart: str
    version: str
    image: str
    instance: str
    replicas: int = 1
    generation: int = 1
    observed_generation: int = 1
    ready_replicas: int = 1
    available_replicas: int = 1
    current_replicas: int = 1
    updated_replicas: int = 1
    current_revision: str = ""
    update_revision: str = ""
    partition: int = 0
    old_image: str = ""
    failure: tuple[str, str] | None = None  # waiting (reason, message) of updated pods


@dataclass
class _DaemonSet:
    namespace: str
    name: str
    chart: str
    version: str
    image: str
    instance: str
    desired_number_scheduled: int = 3
    current_number_scheduled: int = 3
    updated_number_scheduled: int = 3
    number_ready: int = 3
    number_available: int = 3
    number_misscheduled: int = 0
    generation: int = 1
    observed_generation: int = 1
    old_image: str = ""
    failure: tuple[str, str] | None = None  # waiting (reason, message) of updated pods


@dataclass
class _Namespace:
    deployments: dict[str, _Deployment] = field(default_factory=dict)
    statefulsets: dict[str, _StatefulSet] = field(default_factory=dict)
    daemonsets: dict[str, _DaemonSet] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # hand-added pods
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)  # as stored, without RV


@dataclass(frozen=True)
class _Kind:
    group_version: str
    kind: str

    @property
    def prefix(self) -> str:
        return "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"


KINDS: dict[str, _Kind] = {
    "deployments": _Kind("apps/v1", "Deployment"),
    "replicasets": _Kind("apps/v1", "ReplicaSet"),
    "statefulsets": _Kind("apps/v1", "StatefulSet"),
    "daemonsets": _Kind("apps/v1", "DaemonSet"),
    "pods": _Kind("v1", "Pod"),
    "secrets": _Kind("v1", "Secret"),
    "leases": _Kind("coordination.k8s.io/v1", "Lease"),
}


@dataclass
class _Stored:
    body: str  # canonical JSON without resourceVersion: what "changed" compares
    obj: dict[str, Any]  # as served, with metadata.resourceVersion


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    kind: str  # plural resource: "deployments", "leases", ...
    namespace: str
    type: EventType
    object: dict[str, Any]
    previous: dict[str, Any] | None = None  # the object before a MODIFIED change

    def seen_through(self, wants: Callable[[dict[str, Any]], bool]) -> tuple[str, Any] | None:
        """(type, object) as a watch with selector `wants` gets it, or None. As in the API
        server's watch cache: an object that starts matching is ADDED, one that stops
        matching is DELETED (its previous content with the new resourceVersion)."""
        now = wants(self.object)
        if self.type != "MODIFIED" or self.previous is None:
            return (self.type, self.object) if now else None
        before = wants(self.previous)
        if now:
            return ("MODIFIED" if before else "ADDED", self.object)
        if before:
            gone = copy.deepcopy(self.previous)
            gone["metadata"]["resourceVersion"] = str(self.resource_version)
            return ("DELETED", gone)
        return None


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Watcher:
    kind: str
    namespace: str
    wants: Callable[[dict[str, Any]], bool]
    queue: asyncio.Queue[WatchEvent | str] = field(default_factory=asyncio.Queue)


_END, _ABORT = "end", "abort"  # queue sentinels: finish the stream cleanly / cut the connection


def _hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


class FakeKube:
    """`async with FakeKube() as kube:` then point `Configuration(host=kube.url)` at it (or
    write a kubeconfig with `kube.kubeconfig(path)`)."""

    def __init__(self) -> None:
        self._namespaces: dict[str, _Namespace] = {}
        self.latency = 0.0
        self.fault: Fault | None = None
        self.fail_next = 0  # answer this many next requests with 500, then recover
        self.requests: list[str] = []
        self.expired_as: Literal["event", "status"] = "event"  # how a too-old RV is answered
        self.history_limit = 10_000  # watch events kept for resuming; older ones are compacted
        self.watches_started = 0  # watch requests answered with a stream so far
        self.forbid_cluster_wide = False  # RBAC with namespaced roles only: 403 on `get -A`
        self.forbidden: set[str] = set()  # plural kinds this client may not read: 403
        self._rv = 1
        self._horizon = 1  # a watch may resume from any resourceVersion >= this
        self._store: dict[str, dict[tuple[str, str], _Stored]] = {}  # ns -> (kind, name)
        self._order: dict[str, list[tuple[str, str]]] = {}  # ns -> keys in render order
        self._history: deque[WatchEvent] = deque()
        self._watchers: set[_Watcher] = set()
        self._watches_changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._extras: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # (plural, ns)

    async def __aenter__(self) -> FakeKube:
        app = web.Application(middlewares=[self._faults])
        self._incident_routes(app)
        for kind, info in KINDS.items():
            collection = f"{info.prefix}/namespaces/{{ns}}/{kind}"
            app.router.add_get(collection, self._list(kind))
            app.router.add_get(collection + "/{name}", self._get(kind))
            app.router.add_get(f"{info.prefix}/{kind}", self._list_all(kind))
        leases = f"{KINDS['leases'].prefix}/namespaces/{{ns}}/leases"
        app.router.add_post(leases, self._create_lease)
        app.router.add_put(leases + "/{name}", self._replace_lease)
        app.router.add_patch(leases + "/{name}", self._patch_lease)
        app.router.add_delete(leases + "/{name}", self._delete_lease)
        app.router.add_post("/_fake/helm/upgrade", self._fake_helm_upgrade)
        app.router.add_post("/_fake/helm/rollback", self._fake_helm_rollback)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        self.drop_watches()
        if self._runner is not None:
            await self._runner.cleanup()

    def kubeconfig(self, path: Path, *, context: str = "fake", token: str = "not-a-secret") -> Path:
        """Write a kubeconfig whose current context `context` points at this fake."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {"token": token}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(doc))
        return path

    # --- seeding and scripting -------------------------------------------------------------

    def _ns(self, namespace: str) -> _Namespace:
        return self._namespaces.setdefault(namespace, _Namespace())

    def add_deployment(
        self,
        namespace: str,
        name: str,
        *,
        chart: str,
        version: str,
        replicas: int = 2,
        image: str | None = None,
        release: str | None = None,
        image_digest: str | None = None,
    ) -> None:
        """A Deployment of Helm `release` (default: `name`), fully rolled out, with its pods;
        `image_digest` (`sha256:...`) is what its pods report they pulled (`imageID`)."""
        image = image or f"harbor.example.org/toolforge/{name}:{version}"
        self._ns(namespace).deployments[name] = _Deployment(
            namespace, name, replicas, chart, version, image, release or name,
            image_digest=image_digest,
        )  # fmt: skip
        self._sync(namespace)

    def start_rollout(
        self,
        namespace: str,
        name: str,
        *,
        version: str,
        ready_after_polls: int | None = 1,
        failure: tuple[str, str] | None = None,
    ) -> None:
        """Upgrade `name` to `version` (new ReplicaSet); it completes after K deployment
        polls (None: never). `failure` = (reason, message) makes every new pod wait with it."""
        d = self._ns(namespace).deployments[name]
        d.old = d.previous = (d.revision, d.image)
        d.version = version
        d.image = d.image.rsplit(":", 1)[0] + f":{version}"
        d.generation += 1
        d.revision += 1
        d.ready = False
        d.polls = 0
        d.ready_after_polls = ready_after_polls
        d.failure = failure
        d.terminating = 0
        d.deadline_exceeded = False
        self._sync(namespace)

    def edit_by_hand(
        self, namespace: str, name: str, *, at: str, version: str | None = None,
        manager: str = "kubectl-edit",
    ) -> None:  # fmt: skip
        """Someone changes `name`'s pod template outside any deploy (`kubectl edit`, `kubectl
        rollout restart`, a reloader): the API server stamps `manager` and `at` (RFC 3339) in
        the Deployment's managedFields, the controller creates a new ReplicaSet at `at`, and
        the rollout completes. `version` changes the image tag too (else only the pods)."""
        d = self._ns(namespace).deployments[name]
        d.managed = [
            {"manager": "helm", "operation": "Update", "apiVersion": "apps/v1", "time": _T0},
            {"manager": manager, "operation": "Update", "apiVersion": "apps/v1", "time": at},
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "time": at, "subresource": "status"},
        ]  # fmt: skip
        d.created[d.revision + 1] = at
        keep = d.version
        self.start_rollout(namespace, name, version=version or d.version)
        if version is None:
            d.version = keep
        self.finish_rollout(namespace, name)

    def tick(self, namespace: str) -> None:
        """One controller step for the Deployments in `namespace`: what a list or get of
        Deployments does, for tests that only watch."""
        self._tick(namespace)
        self._sync(namespace)

    def finish_rollout(self, namespace: str, name: str, *, terminating: int = 0) -> None:
        """Complete `name`'s rollout now. `terminating` old pods are still shutting down:
        `status.replicas` counts them above `updatedReplicas` until `update_deployment(...,
        terminating=0)`."""
        d = self._ns(namespace).deployments[name]
        d.ready, d.old, d.failure, d.deadline_exceeded = True, None, None, False
        d.terminating = terminating
        self._sync(namespace)

    def exceed_progress_deadline(self, namespace: str, name: str) -> None:
        """The Deployment controller gives up on the rollout: condition Progressing=False with
        reason ProgressDeadlineExceeded; the rollout stays incomplete."""
        d = self._ns(namespace).deployments[name]
        d.deadline_exceeded, d.ready, d.ready_after_polls = True, False, None
        self._sync(namespace)

    def update_deployment(self, namespace: str, name: str, **changes: Any) -> None:
        """Set fields of the modelled Deployment (`replicas`, `ready`, `terminating`,
        `generation`, ...), then publish the change."""
        _assign(self._ns(namespace).deployments[name], changes)
        self._sync(namespace)

    def add_pod(self, namespace: str, pod: dict[str, Any]) -> None:
        self._ns(namespace).pods[pod["metadata"]["name"]] = pod
        self._sync(namespace)

    def add_helm_release(
        self,
        namespace: str,
        release: str,
        revision: int,
        chart: str,
        version: str,
        status: str = "deployed",
        *,
        config: dict[str, Any] | None = None,
        description: str = "Upgrade complete",
    ) -> None:
        secret = helm_release_secret(namespace, release, revision, chart, version, status,
                                     config=config, description=description)  # fmt: skip
        self._ns(namespace).secrets[secret["metadata"]["name"]] = secret
        self._sync(namespace)

    # --- what helm does to the cluster (the stand-ins in tests/support/bin, FAKE_KUBE_APPLY) ---

    def helm_history(self, namespace: str, release: str) -> list[dict[str, Any]]:
        """`release`'s records (Helm's release JSON, decoded from its Secrets), oldest first."""
        found = []
        for secret in self._ns(namespace).secrets.values():
            labels = secret["metadata"].get("labels") or {}
            if secret.get("type") == "helm.sh/release.v1" and labels.get("name") == release:
                raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
                found.append(json.loads(gzip.decompress(raw)))
        return sorted(found, key=lambda r: int(r["version"]))

    def deployment_version(self, namespace: str, name: str) -> str | None:
        """The version `name`'s pods run (its template's), None without that Deployment."""
        d = self._ns(namespace).deployments.get(name)
        return d.version if d is not None else None

    def _helm_write(
        self, namespace: str, release: str, version: str, chart: str | None,
        config: dict[str, Any] | None, description: str, *, wait: bool,
    ) -> int:  # fmt: skip
        """A new revision `deployed` (the ones deployed before: superseded), then the
        release's Deployments roll out `version` (done at once with `wait`, as `--wait`
        returns after it; else after one poll)."""
        history = self.helm_history(namespace, release)
        for r in history:
            if r["info"]["status"] == "deployed":
                meta = r["chart"]["metadata"]
                self.add_helm_release(namespace, release, int(r["version"]), meta["name"],
                                      meta["version"], "superseded", config=r.get("config"),
                                      description=r["info"].get("description", ""))  # fmt: skip
        revision = int(history[-1]["version"]) + 1 if history else 1
        chart = chart or (history[-1]["chart"]["metadata"]["name"] if history else release)
        self.add_helm_release(namespace, release, revision, chart, version, config=config,
                              description=description)  # fmt: skip
        ns = self._ns(namespace)
        mine = [d for d in ns.deployments.values() if d.instance == release]
        if not mine:
            self.add_deployment(namespace, release, chart=chart, version=version)
        for d in mine:
            if d.version != version:
                self.start_rollout(namespace, d.name, version=version)
                if wait:
                    self.finish_rollout(namespace, d.name)
        return revision

    def helm_upgrade(
        self, namespace: str, release: str, version: str, *, chart: str | None = None,
        config: dict[str, Any] | None = None, wait: bool = True,
    ) -> int:  # fmt: skip
        """What `helm upgrade --install` (helmfile sync/apply) does; the new revision."""
        return self._helm_write(namespace, release, version, chart, config, "Upgrade complete",
                                wait=wait)  # fmt: skip

    def helm_rollback(self, namespace: str, release: str, revision: int = 0, *,
                      wait: bool = True) -> dict[str, Any]:  # fmt: skip
        """What `helm rollback <release> <revision>` does: revision 0 is the one before the
        newest; that revision's chart version and values become a new revision. The record
        rolled back to; LookupError (helm's message) when there is none."""
        history = self.helm_history(namespace, release)
        if not history:
            raise LookupError(f"release: not found: {release}")
        wanted = revision or int(history[-1]["version"]) - 1
        target = next((r for r in history if int(r["version"]) == wanted), None)
        if target is None:
            raise LookupError(f"release has no {wanted} version")
        meta = target["chart"]["metadata"]
        self._helm_write(namespace, release, meta["version"], meta["name"], target.get("config"),
                         f"Rollback to {wanted}", wait=wait)  # fmt: skip
        return target

    # StatefulSets

    def add_statefulset(
        self,
        namespace: str,
        name: str,
        *,
        chart: str,
        version: str,
        replicas: int = 1,
        image: str | None = None,
        release: str | None = None,
        partition: int = 0,
    ) -> None:
        """A StatefulSet, fully rolled out (every pod current, updated and ready)."""
        revision = f"{name}-{_hash(name, version)[:10]}"
        image = image or f"harbor.example.org/toolforge/{name}:{version}"
        self._ns(namespace).statefulsets[name] = _StatefulSet(
            namespace,
            name,
            chart,
            version,
            image,
            release or name,
            replicas=replicas,
            ready_replicas=replicas,
            available_replicas=replicas,
            current_replicas=replicas,
            updated_replicas=replicas,
            current_revision=revision,
            update_revision=revision,
            partition=partition,
            old_image=image,
        )
        self._sync(namespace)

    def start_statefulset_rollout(
        self,
        namespace: str,
        name: str,
        *,
        version: str,
        partition: int | None = None,
        failure: tuple[str, str] | None = None,
    ) -> None:
        """A new template: generation+1, a new updateRevision, no pod updated yet. Pods move
        to it with `advance_statefulset` (highest ordinal first, down to `partition`);
        `failure` = (reason, message) keeps each updated pod waiting and unready."""
        s = self._ns(namespace).statefulsets[name]
        s.old_image = s.image
        s.version = version
        s.image = s.image.rsplit(":", 1)[0] + f":{version}"
        s.generation += 1
        s.observed_generation = s.generation
        s.update_revision = f"{name}-{_hash(name, version, s.generation)[:10]}"
        s.updated_replicas = 0
        s.current_replicas = s.replicas
        s.failure = failure
        if partition is not None:
            s.partition = partition
        self._sync(namespace)

    def advance_statefulset(self, namespace: str, name: str, pods: int = 1) -> None:
        """The StatefulSet controller replaces `pods` more pods (never below `partition`); with
        every pod updated, currentRevision becomes updateRevision."""
        s = self._ns(namespace).statefulsets[name]
        limit = max(0, s.replicas - s.partition)
        s.updated_replicas = min(limit, s.updated_replicas + pods)
        s.current_replicas = s.replicas - s.updated_replicas
        unready = s.updated_replicas if s.failure else 0
        s.ready_replicas = s.available_replicas = s.replicas - unready
        if s.updated_replicas == s.replicas and not s.failure:
            s.current_revision, s.current_replicas = s.update_revision, s.replicas
        self._sync(namespace)

    def update_statefulset(self, namespace: str, name: str, **changes: Any) -> None:
        """Set fields of the modelled StatefulSet (`ready_replicas`, `observed_generation`,
        `current_revision`, `partition`, ...), then publish the change."""
        _assign(self._ns(namespace).statefulsets[name], changes)
        self._sync(namespace)

    # DaemonSets

    def add_daemonset(
        self,
        namespace: str,
        name: str,
        *,
        chart: str,
        version: str,
        nodes: int = 3,
        image: str | None = None,
        release: str | None = None,
    ) -> None:
        """A DaemonSet scheduled on `nodes` nodes, fully rolled out."""
        image = image or f"harbor.example.org/toolforge/{name}:{version}"
        self._ns(namespace).daemonsets[name] = _DaemonSet(
            namespace,
            name,
            chart,
            version,
            image,
            release or name,
            desired_number_scheduled=nodes,
            current_number_scheduled=nodes,
            updated_number_scheduled=nodes,
            number_ready=nodes,
            number_available=nodes,
            old_image=image,
        )
        self._sync(namespace)

    def start_daemonset_rollout(
        self,
        namespace: str,
        name: str,
        *,
        version: str,
        failure: tuple[str, str] | None = None,
    ) -> None:
        """A new template: generation+1, no pod updated yet (`advance_daemonset` moves them);
        `failure` = (reason, message) keeps each updated pod waiting and unavailable."""
        ds = self._ns(namespace).daemonsets[name]
        ds.old_image = ds.image
        ds.version = version
        ds.image = ds.image.rsplit(":", 1)[0] + f":{version}"
        ds.generation += 1
        ds.observed_generation = ds.generation
        ds.updated_number_scheduled = 0
        ds.failure = failure
        self._sync(namespace)

    def advance_daemonset(self, namespace: str, name: str, pods: int = 1) -> None:
        """The DaemonSet controller replaces `pods` more node pods."""
        ds = self._ns(namespace).daemonsets[name]
        ds.updated_number_scheduled = min(
            ds.desired_number_scheduled, ds.updated_number_scheduled + pods
        )
        unready = ds.updated_number_scheduled if ds.failure else 0
        ds.number_ready = ds.number_available = ds.desired_number_scheduled - unready
        self._sync(namespace)

    def update_daemonset(self, namespace: str, name: str, **changes: Any) -> None:
        """Set fields of the modelled DaemonSet (`number_available`, `observed_generation`,
        `desired_number_scheduled`, ...), then publish the change."""
        _assign(self._ns(namespace).daemonsets[name], changes)
        self._sync(namespace)

    # Leases

    def add_lease(
        self,
        namespace: str,
        name: str,
        *,
        holder: str | None = None,
        duration: int | None = 15,
        acquire_time: str | None = None,
        renew_time: str | None = None,
        transitions: int | None = None,
    ) -> dict[str, Any]:
        """A Lease as another client would have created it; returns it as served."""
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": acquire_time,
            "renewTime": renew_time,
            "leaseTransitions": transitions,
        }
        body = {
            "metadata": {"name": name},
            "spec": {k: v for k, v in spec.items() if v is not None},
        }
        self._ns(namespace).leases[name] = self._new_lease(namespace, body)
        self._sync(namespace)
        return self.lease(namespace, name) or {}

    def lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The Lease as the API serves it (with resourceVersion), or None."""
        self._sync(namespace)
        stored = self._store.get(namespace, {}).get(("leases", name))
        return copy.deepcopy(stored.obj) if stored else None

    def update_lease(self, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
        """Another client writes the Lease: merge `spec` (API field names, e.g.
        `holderIdentity="other"`; None removes a field). Its resourceVersion moves on, so a
        client holding the old one gets 409 Conflict on replace."""
        lease = self._ns(namespace).leases[name]
        _merge_patch(lease.setdefault("spec", {}), spec)
        self._sync(namespace)
        return self.lease(namespace, name) or {}

    def delete(self, namespace: str, kind: str, name: str) -> None:
        """Delete an object (kind: "deployments", "statefulsets", "daemonsets", "pods" added
        with add_pod, "secrets", "leases"); watches see DELETED."""
        del getattr(self._ns(namespace), kind)[name]
        self._sync(namespace)

    # --- watch control ---------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The cluster's current resourceVersion."""
        return self._rv

    @property
    def open_watches(self) -> int:
        return len(self._watchers)

    def drop_watches(self, *, abort: bool = False) -> int:
        """End every open watch: cleanly (the stream ends, as on an API server timeout) or,
        with `abort`, by cutting the connection mid-stream. Returns how many were open."""
        dropped = len(self._watchers)
        for watcher in self._watchers:
            watcher.queue.put_nowait(_ABORT if abort else _END)
        return dropped

    def compact(self) -> int:
        """Forget the change history (as etcd compaction does): a watch from any older
        resourceVersion now answers 410 Gone. Returns the oldest resourceVersion still valid."""
        self._history.clear()
        self._horizon = self._rv
        return self._horizon

    async def wait_for_watches(
        self, count: int = 1, *, started: bool = False, timeout: float = 5.0
    ) -> None:
        """Wait until `count` watches are open (or, with `started`, until `count` watch
        requests were answered since the fake started, e.g. a client's resumed watch)."""

        def reached() -> bool:
            return (self.watches_started if started else len(self._watchers)) >= count

        async with asyncio.timeout(timeout):
            while not reached():
                self._watches_changed.clear()
                await self._watches_changed.wait()

    # --- object rendering ------------------------------------------------------------------

    def _tick(self, namespace: str) -> None:
        for d in self._ns(namespace).deployments.values():
            if d.ready:
                continue
            d.polls += 1
            if d.ready_after_polls is not None and d.polls >= d.ready_after_polls and not d.failure:
                d.ready, d.old = True, None

    def _deployment(self, d: _Deployment) -> dict[str, Any]:
        labels = _helm_labels(d.name, d.instance, d.chart, d.version)
        updated = d.replicas if d.ready else 0
        available = d.replicas if d.ready or d.old else 0
        replicas = d.replicas + (d.replicas if d.old else 0)
        if d.ready and d.terminating:
            replicas = d.replicas + d.terminating
        new_rs = f"{d.name}-{_hash(d.name, d.revision)[:9]}"
        if d.deadline_exceeded:
            progressing = (
                "False",
                "ProgressDeadlineExceeded",
                f'ReplicaSet "{new_rs}" has timed out progressing.',
            )
        elif d.ready:
            progressing = (
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{new_rs}" has successfully progressed.',
            )
        else:
            progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new_rs}" is progressing.')
        if available >= d.replicas:
            available_condition = (
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            available_condition = (
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        status: dict[str, Any] = {
            "observedGeneration": d.generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": [
                _condition("Available", *available_condition),
                _condition("Progressing", *progressing),
            ],
        }
        if d.ready and d.terminating:
            status["terminatingReplicas"] = d.terminating  # Kubernetes >= 1.33
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": d.name,
                "namespace": d.namespace,
                "uid": _hash("deploy", d.namespace, d.name),
                "generation": d.generation,
                "creationTimestamp": _T0,
                "labels": labels,
                "annotations": {_REVISION: str(d.revision)},
                **({"managedFields": d.managed} if d.managed else {}),
            },
            "spec": {
                "replicas": d.replicas,
                "progressDeadlineSeconds": 600,
                "selector": {"matchLabels": {"app.kubernetes.io/name": d.name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": d.name}},
                    "spec": {"containers": [{"name": d.name, "image": d.image}]},
                },
            },
            "status": status,
        }

    def _replicaset(
        self, d: _Deployment, revision: int, image: str, replicas: int
    ) -> dict[str, Any]:
        pod_hash = _hash(d.name, revision)[:9]
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{d.name}-{pod_hash}",
                "namespace": d.namespace,
                "uid": _hash("rs", d.namespace, d.name, revision),
                "labels": {"app.kubernetes.io/name": d.name, "pod-template-hash": pod_hash},
                "annotations": {_REVISION: str(revision)},
                **({"creationTimestamp": d.created[revision]} if revision in d.created else {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": d.name,
                        "uid": _hash("deploy", d.namespace, d.name),
                        "controller": True,
                    }
                ],
            },
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"pod-template-hash": pod_hash}},
                "template": {"spec": {"containers": [{"name": d.name, "image": image}]}},
            },
            "status": {"replicas": replicas},
        }

    def _replicasets(self, d: _Deployment) -> list[dict[str, Any]]:
        sets = [self._replicaset(d, d.revision, d.image, d.replicas)]
        if d.old:
            sets.append(self._replicaset(d, d.old[0], d.old[1], d.replicas))
        elif d.ready and d.terminating and d.previous:
            old = self._replicaset(d, d.previous[0], d.previous[1], 0)
            old["status"]["replicas"] = d.terminating
            sets.append(old)
        return sets

    def _pods_of(self, d: _Deployment) -> list[dict[str, Any]]:
        pods = []
        for rs in self._replicasets(d):
            new = rs["metadata"]["annotations"][_REVISION] == str(d.revision)
            waiting = None
            if new and not d.ready:
                reason, message = d.failure or ("ContainerCreating", "")
                waiting = {"reason": reason, "message": message} if message else {"reason": reason}
            image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
            pulled = d.image_digest if image == d.image and d.image_digest else None
            image_id = f"{image.rsplit(':', 1)[0]}@{pulled}" if pulled and not waiting else ""
            if rs["spec"]["replicas"] == 0:  # scaled down, its pods still shutting down
                for i in range(rs["status"]["replicas"]):
                    pod = pod_json(d.namespace, f"{rs['metadata']['name']}-{i}", rs, image)
                    pod["metadata"]["deletionTimestamp"] = _T0
                    pod["metadata"]["deletionGracePeriodSeconds"] = 30
                    pods.append(pod)
                continue
            for i in range(rs["spec"]["replicas"]):
                pods.append(
                    pod_json(
                        d.namespace,
                        f"{rs['metadata']['name']}-{i}",
                        rs,
                        image,
                        waiting,
                        image_id=image_id,
                    )
                )
        return pods

    def _statefulset(self, s: _StatefulSet) -> dict[str, Any]:
        selector = {"app.kubernetes.io/name": s.name}
        status = {
            "observedGeneration": s.observed_generation,
            "replicas": s.replicas,
            "readyReplicas": s.ready_replicas,
            "availableReplicas": s.available_replicas,
            "currentReplicas": s.current_replicas,
            "updatedReplicas": s.updated_replicas,
            "currentRevision": s.current_revision,
            "updateRevision": s.update_revision,
            "collisionCount": 0,
        }
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {
                "name": s.name,
                "namespace": s.namespace,
                "uid": _hash("sts", s.namespace, s.name),
                "generation": s.generation,
                "creationTimestamp": _T0,
                "labels": _helm_labels(s.name, s.instance, s.chart, s.version),
            },
            "spec": {
                "replicas": s.replicas,
                "serviceName": s.name,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"partition": s.partition},
                },
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {"containers": [{"name": s.name, "image": s.image}]},
                },
            },
            "status": _omit_zero(status, keep=("replicas", "observedGeneration")),
        }

    def _statefulset_pods(self, s: _StatefulSet) -> list[dict[str, Any]]:
        owner = ("StatefulSet", s.name, _hash("sts", s.namespace, s.name))
        order = list(reversed(range(s.replicas)))  # updates go from the highest ordinal down
        updated = set(order[: s.updated_replicas])
        unready_count = max(0, s.replicas - s.ready_replicas)
        first = max(0, s.updated_replicas - unready_count)
        unready = set(order[first : first + unready_count])
        pods = []
        for i in range(s.replicas):
            new = i in updated
            labels = {
                "app.kubernetes.io/name": s.name,
                "controller-revision-hash": s.update_revision if new else s.current_revision,
                "statefulset.kubernetes.io/pod-name": f"{s.name}-{i}",
            }
            waiting = _waiting(s.failure if new else None) if i in unready else None
            image = s.image if new else s.old_image
            pods.append(_owned_pod(s.namespace, f"{s.name}-{i}", owner, labels, image, waiting))
        return pods

    def _daemonset(self, ds: _DaemonSet) -> dict[str, Any]:
        selector = {"app.kubernetes.io/name": ds.name}
        status = {
            "observedGeneration": ds.observed_generation,
            "desiredNumberScheduled": ds.desired_number_scheduled,
            "currentNumberScheduled": ds.current_number_scheduled,
            "updatedNumberScheduled": ds.updated_number_scheduled,
            "numberReady": ds.number_ready,
            "numberAvailable": ds.number_available,
            "numberUnavailable": ds.desired_number_scheduled - ds.number_available,
            "numberMisscheduled": ds.number_misscheduled,
        }
        required = (
            "desiredNumberScheduled",
            "currentNumberScheduled",
            "numberReady",
            "numberMisscheduled",
            "observedGeneration",
        )
        return {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {
                "name": ds.name,
                "namespace": ds.namespace,
                "uid": _hash("ds", ds.namespace, ds.name),
                "generation": ds.generation,
                "creationTimestamp": _T0,
                "labels": _helm_labels(ds.name, ds.instance, ds.chart, ds.version),
            },
            "spec": {
                "selector": {"matchLabels": selector},
                "updateStrategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
                },
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {"containers": [{"name": ds.name, "image": ds.image}]},
                },
            },
            "status": _omit_zero(status, keep=required),
        }

    def _daemonset_pods(self, ds: _DaemonSet) -> list[dict[str, Any]]:
        owner = ("DaemonSet", ds.name, _hash("ds", ds.namespace, ds.name))
        unready = ds.desired_number_scheduled - ds.number_ready  # updated pods first
        pods = []
        for node in range(ds.desired_number_scheduled):
            new = node < ds.updated_number_scheduled
            labels = {"app.kubernetes.io/name": ds.name}
            waiting = _waiting(ds.failure if new else None) if node < unready else None
            image = ds.image if new else ds.old_image
            name = f"{ds.name}-{_hash(ds.name, node, image)[:5]}"
            pod = _owned_pod(ds.namespace, name, owner, labels, image, waiting)
            pod["spec"]["nodeName"] = f"node-{node}"
            pods.append(pod)
        return pods

    def _render(self, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
        """Every object in `namespace` as the API would serve it (without resourceVersion)."""
        ns = self._ns(namespace)
        objects: list[tuple[str, dict[str, Any]]] = []
        objects += [("deployments", self._deployment(d)) for d in ns.deployments.values()]
        objects += [
            ("replicasets", rs) for d in ns.deployments.values() for rs in self._replicasets(d)
        ]
        objects += [("statefulsets", self._statefulset(s)) for s in ns.statefulsets.values()]
        objects += [("daemonsets", self._daemonset(ds)) for ds in ns.daemonsets.values()]
        objects += [("pods", p) for d in ns.deployments.values() for p in self._pods_of(d)]
        objects += [
            ("pods", p) for s in ns.statefulsets.values() for p in self._statefulset_pods(s)
        ]
        objects += [("pods", p) for ds in ns.daemonsets.values() for p in self._daemonset_pods(ds)]
        objects += [("pods", _typed("pods", p)) for p in ns.pods.values()]
        objects += [("secrets", _typed("secrets", s)) for s in ns.secrets.values()]
        objects += [("leases", _typed("leases", lease)) for lease in ns.leases.values()]
        return {(kind, obj["metadata"]["name"]): obj for kind, obj in objects}

    def _sync(self, namespace: str) -> None:
        """Compare the rendered objects with what was last served; every change gets the next
        resourceVersion and goes to the watches (ADDED, MODIFIED, DELETED)."""
        rendered = self._render(namespace)
        store = self._store.setdefault(namespace, {})
        for key, obj in rendered.items():
            obj["metadata"].pop("resourceVersion", None)
            body = json.dumps(obj, sort_keys=True)
            old = store.get(key)
            if old is not None and old.body == body:
                continue
            self._rv += 1
            served = copy.deepcopy(obj)
            served["metadata"]["resourceVersion"] = str(self._rv)
            store[key] = _Stored(body, served)
            if old is None:
                self._publish(key[0], namespace, "ADDED", served)
            else:
                self._publish(key[0], namespace, "MODIFIED", served, old.obj)
        for key in [k for k in store if k not in rendered]:
            self._rv += 1
            gone = copy.deepcopy(store.pop(key).obj)
            gone["metadata"]["resourceVersion"] = str(self._rv)
            self._publish(key[0], namespace, "DELETED", gone)
        self._order[namespace] = list(rendered)

    def _publish(
        self,
        kind: str,
        namespace: str,
        type_: EventType,
        obj: dict[str, Any],
        previous: dict[str, Any] | None = None,
    ) -> None:
        event = WatchEvent(self._rv, kind, namespace, type_, obj, previous)
        self._history.append(event)
        while len(self._history) > self.history_limit:
            self._horizon = self._history.popleft().resource_version
        for watcher in self._watchers:
            if watcher.kind == kind and watcher.namespace == namespace:
                watcher.queue.put_nowait(event)

    def _objects(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        """The current objects of `kind`, as served (with resourceVersion), in render order."""
        self._sync(namespace)
        store = self._store[namespace]
        return [store[key].obj for key in self._order[namespace] if key[0] == kind]

    # --- PodDisruptionBudgets, cert-manager Certificates, TLS Secrets (hygiene monitors) ---

    def add_pdb(self, namespace: str, name: str, match_labels: dict[str, str]) -> None:
        self._extras.setdefault(("poddisruptionbudgets", namespace), {})[name] = {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"matchLabels": match_labels}, "minAvailable": 1},
        }

    def delete_pdb(self, namespace: str, name: str) -> None:
        self._extras.get(("poddisruptionbudgets", namespace), {}).pop(name, None)

    def add_certificate(self, namespace: str, name: str, not_after: str) -> None:
        """A cert-manager Certificate whose `status.notAfter` is `not_after` (RFC 3339)."""
        self._extras.setdefault(("certificates", namespace), {})[name] = {
            "apiVersion": "cert-manager.io/v1", "kind": "Certificate",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"secretName": f"{name}-tls"},
            "status": {"notAfter": not_after, "conditions": [{"type": "Ready", "status": "True"}]},
        }  # fmt: skip

    def add_tls_secret(
        self, namespace: str, name: str, cert_pem: bytes, *, changed_at: str | None = None,
        manager: str = "cert-manager-certificates-issuing",
    ) -> None:  # fmt: skip
        """A `kubernetes.io/tls` Secret; `changed_at` (RFC 3339) is when `manager` last wrote
        it, as the API server records it in `metadata.managedFields[].time`."""
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if changed_at is not None:
            metadata["creationTimestamp"] = _T0
            metadata["annotations"] = {"cert-manager.io/certificate-name": name}
            metadata["managedFields"] = [
                {"manager": manager, "operation": "Update", "apiVersion": "v1",
                 "time": changed_at, "fieldsType": "FieldsV1", "fieldsV1": {"f:data": {}}},
            ]  # fmt: skip
        self._ns(namespace).secrets[name] = {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": metadata,
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": ""},
        }  # fmt: skip
        self._sync(namespace)

    def set_pod_log(self, namespace: str, pod: str, text: str) -> None:
        """What `GET .../pods/<pod>/log` answers (the last `tailLines` lines of it)."""
        self._extras.setdefault(("logs", namespace), {})[pod] = {"text": text}

    def add_event(
        self, namespace: str, kind: str, name: str, reason: str, message: str, *, at: str,
        type_: str = "Warning",
    ) -> None:  # fmt: skip
        """A `v1` Event about `kind/name` last seen `at` (RFC 3339)."""
        events = self._extras.setdefault(("events", namespace), {})
        events[f"{name}.{len(events)}"] = {
            "metadata": {"name": f"{name}.{len(events)}", "namespace": namespace},
            "involvedObject": {"kind": kind, "name": name, "namespace": namespace},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "firstTimestamp": at, "lastTimestamp": at,
        }  # fmt: skip

    def _incident_routes(self, app: web.Application) -> None:
        for prefix, plural, list_kind in (
            ("/apis/policy/v1", "poddisruptionbudgets", "PodDisruptionBudgetList"),
            ("/apis/cert-manager.io/v1", "certificates", "CertificateList"),
            ("/api/v1", "events", "EventList"),
        ):
            route = f"{prefix}/namespaces/{{ns}}/{plural}"
            app.router.add_get(route, self._list_extra(plural, list_kind))
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}/log", self._pod_log)

    async def _pod_log(self, request: web.Request) -> web.Response:
        ns, name = request.match_info["ns"], request.match_info["name"]
        found = self._extras.get(("logs", ns), {}).get(name)
        if found is None:
            return _status(404, "NotFound", f'pods "{name}" not found')
        lines = found["text"].splitlines(keepends=True)
        tail = int(request.query.get("tailLines", "0") or 0)
        return web.Response(text="".join(lines[-tail:] if tail else lines))

    def _list_extra(self, plural: str, list_kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            items = self._extras.get((plural, request.match_info["ns"]), {})
            return web.json_response(
                {
                    "kind": list_kind,
                    "metadata": {"resourceVersion": "1"},
                    "items": list(items.values()),
                }
            )

        return handler

    # --- test control: what helm changes, asked by the helm/helmfile stand-ins --------------

    async def _fake_helm_upgrade(self, request: web.Request) -> web.Response:
        """POST {namespace, release, version, chart?, config?, wait?} -> {revision}."""
        body = await request.json()
        revision = self.helm_upgrade(
            body["namespace"], body["release"], body["version"], chart=body.get("chart"),
            config=body.get("config"), wait=bool(body.get("wait", True)),
        )  # fmt: skip
        return web.json_response({"revision": revision})

    async def _fake_helm_rollback(self, request: web.Request) -> web.Response:
        """POST {namespace, release, revision, wait?} -> the record rolled back to, or 404
        {error} as helm says it."""
        body = await request.json()
        try:
            target = self.helm_rollback(body["namespace"], body["release"],
                                        int(body.get("revision") or 0),
                                        wait=bool(body.get("wait", True)))  # fmt: skip
        except LookupError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        return web.json_response(target)

    # --- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fault == "hang":
            await self._stopping.wait()
        if any(f"/{kind}" in request.path for kind in self.forbidden):
            return _status(403, "Forbidden", f"{request.path} is forbidden for this user")
        if self.fault == "error" or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            return _status(500, "InternalError", "injected fault")
        response: web.StreamResponse = await handler(request)
        return response

    def _list(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.StreamResponse:
            namespace = request.match_info["ns"]
            if _truthy(request.query.get("watch")):
                return await self._watch(request, kind, namespace)
            if kind == "deployments":
                self._tick(namespace)
            wants = _filter(request.query)
            items = [o for o in self._objects(kind, namespace) if wants(o)]
            return self._list_response(kind, items)

        return handler

    def _list_response(self, kind: str, items: list[dict[str, Any]]) -> web.Response:
        """A `<Kind>List` the way the API server answers a LIST."""
        info = KINDS[kind]
        return web.json_response(
            {
                "apiVersion": info.group_version,
                "kind": info.kind + "List",
                "metadata": {"resourceVersion": str(self._rv)},
                "items": [
                    {k: v for k, v in o.items() if k not in ("apiVersion", "kind")} for o in items
                ],
            }
        )

    def _list_all(self, kind: str) -> Any:
        """A list across every namespace (`kubectl get -A`), selectors applied; no watch."""

        async def handler(request: web.Request) -> web.StreamResponse:
            if self.forbid_cluster_wide:
                return _status(403, "Forbidden", f"{kind} is forbidden at the cluster scope")
            wants = _filter(request.query)
            items = []
            for namespace in list(self._namespaces):
                if kind == "deployments":
                    self._tick(namespace)
                items += [o for o in self._objects(kind, namespace) if wants(o)]
            return self._list_response(kind, items)

        return handler

    def _get(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            namespace, name = request.match_info["ns"], request.match_info["name"]
            if kind == "deployments":
                self._tick(namespace)
            for o in self._objects(kind, namespace):
                if o["metadata"]["name"] == name:
                    return web.json_response(o)
            return _not_found(kind, name)

        return handler

    async def _watch(self, request: web.Request, kind: str, namespace: str) -> web.StreamResponse:
        query = request.query
        since = query.get("resourceVersion", "")
        try:
            timeout = float(query["timeoutSeconds"]) if "timeoutSeconds" in query else None
            start = int(since) if since not in ("", "0") else None
        except ValueError:
            return _status(400, "BadRequest", "invalid timeoutSeconds or resourceVersion")
        wants = _filter(query)
        self._sync(namespace)
        if start is not None and start < self._horizon:
            expired = _status_body(
                410, "Expired", f"too old resource version: {start} ({self._horizon})"
            )
            if self.expired_as == "status":
                return web.json_response(expired, status=410)
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(_line({"type": "ERROR", "object": expired}))
            await response.write_eof()
            return response
        # The backlog and the registration happen without an await in between: no change
        # can fall between them.
        if start is None:
            backlog = [("ADDED", o) for o in self._objects(kind, namespace) if wants(o)]
        else:
            backlog = [
                seen
                for e in self._history
                if e.resource_version > start and e.kind == kind and e.namespace == namespace
                if (seen := e.seen_through(wants)) is not None
            ]
        watcher = _Watcher(kind, namespace, wants)
        self._watchers.add(watcher)
        self.watches_started += 1
        self._watches_changed.set()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            for type_, obj in backlog:
                await response.write(_line({"type": type_, "object": obj}))
            deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
            while True:
                remaining = None
                if deadline is not None:
                    remaining = deadline - asyncio.get_running_loop().time()
                    if remaining <= 0:
                        break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if item == _END:
                    break
                if item == _ABORT:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                assert isinstance(item, WatchEvent)
                seen = item.seen_through(wants)
                if seen is not None:
                    await response.write(_line({"type": seen[0], "object": seen[1]}))
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            self._watchers.discard(watcher)
            self._watches_changed.set()
        return response

    # Leases

    def _new_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        lease = copy.deepcopy(dict(body))
        meta = lease.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        meta["namespace"] = namespace
        meta["uid"] = _hash("lease", namespace, meta["name"], self._rv)
        meta["creationTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        lease["apiVersion"], lease["kind"] = "coordination.k8s.io/v1", "Lease"
        lease.setdefault("spec", {})
        return lease

    async def _lease_body(self, request: web.Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise web.HTTPBadRequest(text="request body is not JSON") from None

    async def _create_lease(self, request: web.Request) -> web.Response:
        namespace = request.match_info["ns"]
        body = await self._lease_body(request)
        name = (body.get("metadata") or {}).get("name")
        if not name:
            return _status(422, "Invalid", "Lease.coordination.k8s.io is invalid: name required")
        leases = self._ns(namespace).leases
        if name in leases:
            return _status(
                409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" already exists'
            )
        leases[name] = self._new_lease(namespace, body)
        return web.json_response(self.lease(namespace, name), status=201)

    def _precondition(self, namespace: str, name: str, body: Any) -> web.Response | None:
        """404 if absent; 409 Conflict if `body` carries a resourceVersion that is not the
        current one (optimistic concurrency, as the API server checks it)."""
        current = self.lease(namespace, name)
        if current is None:
            return _not_found("leases", name)
        meta = body.get("metadata") if isinstance(body, dict) else None
        sent = (meta or {}).get("resourceVersion")
        if sent and sent != current["metadata"]["resourceVersion"]:
            return _status(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on leases.coordination.k8s.io "{name}": the '
                "object has been modified; please apply your changes to the latest version "
                "and try again",
            )
        return None

    def _store_lease(self, namespace: str, name: str, lease: dict[str, Any]) -> web.Response:
        old = self._ns(namespace).leases[name]["metadata"]
        meta = lease.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        for owned in ("name", "namespace", "uid", "creationTimestamp"):
            meta[owned] = old[owned]
        lease["apiVersion"], lease["kind"] = "coordination.k8s.io/v1", "Lease"
        self._ns(namespace).leases[name] = lease
        return web.json_response(self.lease(namespace, name))

    async def _replace_lease(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["ns"], request.match_info["name"]
        body = await self._lease_body(request)
        refused = self._precondition(namespace, name, body)
        if refused is not None:
            return refused
        return self._store_lease(namespace, name, copy.deepcopy(body))

    async def _patch_lease(self, request: web.Request) -> web.Response:
        """JSON patch (RFC 6902), merge patch (RFC 7386) and strategic merge patch (the same
        as a merge patch for a Lease: its spec has no lists)."""
        namespace, name = request.match_info["ns"], request.match_info["name"]
        body = await self._lease_body(request)
        refused = self._precondition(namespace, name, body)
        if refused is not None:
            return refused
        lease = copy.deepcopy(self._ns(namespace).leases[name])
        content_type = request.content_type
        if content_type == "application/json-patch+json" and isinstance(body, list):
            try:
                _json_patch(lease, body)
            except (KeyError, IndexError, ValueError, TypeError) as e:
                return _status(422, "Invalid", f"the JSON patch cannot be applied: {e}")
        elif content_type in (
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
        ) and isinstance(body, dict):
            _merge_patch(lease, body)
        else:
            return _status(
                415, "UnsupportedMediaType", f"the patch type {content_type} is not supported"
            )
        return self._store_lease(namespace, name, lease)

    async def _delete_lease(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["ns"], request.match_info["name"]
        if name not in self._ns(namespace).leases:
            return _not_found("leases", name)
        del self._ns(namespace).leases[name]
        self._sync(namespace)
        body = _status_body(200, "", "")
        body.update(status="Success", details={"name": name, "kind": "leases"})
        return web.json_response(body)


_REVISION = "deployment.kubernetes.io/revision"


def _helm_labels(name: str, instance: str, chart: str, version: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": instance,
        "app.kubernetes.io/managed-by": "Helm",
        "helm.sh/chart": f"{chart}-{version.replace('+', '_')}",
    }


def _condition(type_: str, status: str, reason: str, message: str) -> dict[str, str]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastUpdateTime": _T0,
        "lastTransitionTime": _T0,
    }


def _omit_zero(status: dict[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """The API server leaves out zero counts (`omitempty`) except the required fields."""
    return {k: v for k, v in status.items() if k in keep or v not in (0, "", None)}


def _waiting(failure: tuple[str, str] | None) -> dict[str, str]:
    reason, message = failure or ("ContainerCreating", "")
    return {"reason": reason, "message": message} if message else {"reason": reason}


def _typed(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of a stored object with its apiVersion and kind."""
    info = KINDS[kind]
    return {"apiVersion": info.group_version, "kind": info.kind, **copy.deepcopy(obj)}


def _assign(model: Any, changes: Mapping[str, Any]) -> None:
    known = {f.name for f in fields(model)}
    unknown = set(changes) - known
    if unknown:
        raise TypeError(f"{type(model).__name__} has no fields {sorted(unknown)}")
    for key, value in changes.items():
        setattr(model, key, value)


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


def _owned_pod(
    namespace: str,
    name: str,
    owner: tuple[str, str, str],  # kind, name, uid
    labels: dict[str, str],
    image: str,
    waiting: dict[str, str] | None,
) -> dict[str, Any]:
    pod = pod_json(namespace, name, None, image, waiting)
    pod["metadata"]["labels"] = labels
    kind, owner_name, uid = owner
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "apps/v1", "kind": kind, "name": owner_name, "uid": uid, "controller": True}
    ]
    return pod


def pod_json(
    namespace: str,
    name: str,
    owner_rs: dict[str, Any] | None,
    image: str,
    waiting: dict[str, str] | None = None,
    restarts: int = 0,
    *,
    image_id: str = "",
) -> dict[str, Any]:
    """A `v1` Pod, Running unless a container `waiting` state is given; `image_id` is the
    pulled image by digest (`<repo>@sha256:...`), empty until pulled."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "uid": _hash("pod", namespace, name),
    }
    if owner_rs is not None:
        metadata["labels"] = {
            "pod-template-hash": owner_rs["metadata"]["labels"]["pod-template-hash"]
        }
        metadata["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": owner_rs["metadata"]["name"],
                "uid": owner_rs["metadata"]["uid"],
                "controller": True,
            }
        ]
    state = {"waiting": waiting} if waiting else {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "main", "image": image}]},
        "status": {
            "phase": "Pending" if waiting else "Running",
            "containerStatuses": [
                {
                    "name": "main",
                    "image": image,
                    "imageID": image_id,
                    "ready": not waiting,
                    "restartCount": restarts,
                    "started": not waiting,
                    "state": state,
                }
            ],
        },
    }


def _selected(obj: dict[str, Any], query: Any) -> bool:
    """Equality-based `labelSelector` (`a=b,c=d`), as the client sends it."""
    selector = query.get("labelSelector", "")
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip().lstrip("="):
            return False
    return True


def _field_terms(query: Any) -> list[tuple[str, str, bool]]:
    """`fieldSelector` terms on `metadata.name` / `metadata.namespace` (and a Secret's `type`,
    which the API server also indexes) (`=`, `==`, `!=`) as (field, value, negated); anything
    else is a 400, as on the API server."""
    terms = []
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        negate = "!=" in term
        key, _, value = term.replace("!=", "=").replace("==", "=").partition("=")
        if key.strip() not in ("metadata.name", "metadata.namespace", "type"):
            raise web.HTTPBadRequest(
                text=json.dumps(
                    _status_body(400, "BadRequest", f"field label not supported: {key}")
                ),
                content_type="application/json",
            )
        terms.append((key.strip().split(".")[-1], value.strip(), negate))
    return terms


def _filter(query: Any) -> Callable[[dict[str, Any]], bool]:
    """The request's label and field selectors as a predicate (checked once, up front)."""
    terms = _field_terms(query)

    def wants(obj: dict[str, Any]) -> bool:
        meta = obj["metadata"]
        fields_ok = all(
            ((obj.get(f) if f == "type" else meta.get(f)) == v) != negate for f, v, negate in terms
        )
        return fields_ok and _selected(obj, query)

    return wants


def _merge_patch(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """RFC 7386: objects merge, None deletes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge_patch(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> None:
    """RFC 6902 add/replace/remove/test on object members and list indexes."""
    for op in ops:
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")
        ]
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) and last != "-" else last
        kind = op["op"]
        if kind == "test":
            if node[key] != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        elif kind == "remove":
            del node[key]
        elif kind in ("add", "replace"):
            if isinstance(node, list) and kind == "add":
                node.insert(len(node) if key == "-" else key, copy.deepcopy(op["value"]))
            else:
                if kind == "replace" and (key not in node if isinstance(node, dict) else False):
                    raise KeyError(op["path"])
                node[key] = copy.deepcopy(op["value"])
        else:
            raise ValueError(f"unsupported op {kind}")


def _not_found(kind: str, name: str) -> web.Response:
    group = KINDS[kind].group_version.rpartition("/")[0]
    resource = f"{kind}.{group}" if group and group != "apps" else kind
    return _status(404, "NotFound", f'{resource} "{name}" not found')


def _status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response(_status_body(code, reason, message), status=code)
