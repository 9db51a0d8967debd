"""A small Kubernetes API server fake that the official client talks to over HTTP.

It serves the few endpoints the bot reads (Deployments, ReplicaSets, Pods, Secrets; list and
get) in the real `apps/v1` and `v1` JSON shapes, and can be scripted: a rollout that completes
after K polls or never, a new pod stuck in ImagePullBackOff, added latency, and 500/hang faults.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Fault = Literal["error", "hang"]


def helm_release_secret(
    namespace: str, release: str, revision: int, chart: str, version: str, status: str = "deployed"
) -> dict[str, Any]:
    """A `v1` Secret encoded exactly like Helm 3's secret storage driver writes it."""
    record = {
        "name": release,
        "namespace": namespace,
        "version": revision,
        "info": {"status": status, "description": "Upgrade complete"},
        "chart": {"metadata": {"name": chart, "version": version, "appVersion": version}},
        "config": {},
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


@dataclass
class _Namespace:
    deployments: dict[str, _Deployment] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # hand-added pods
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)


def _hash(*parts: object) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:10]


class FakeKube:
    """`async with FakeKube() as kube:` then point `Configuration(host=kube.url)` at it."""

    def __init__(self) -> None:
        self._namespaces: dict[str, _Namespace] = {}
        self.latency = 0.0
        self.fault: Fault | None = None
        self.fail_next = 0  # answer this many next requests with 500, then recover
        self.requests: list[str] = []
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""
        self._extras: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}  # (plural, ns)

    async def __aenter__(self) -> FakeKube:
        app = web.Application(middlewares=[self._faults])
        self._incident_routes(app)
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/deployments", self._list("deployments"))
        app.router.add_get(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}", self._get("deployments")
        )
        app.router.add_get("/apis/apps/v1/namespaces/{ns}/replicasets", self._list("replicasets"))
        app.router.add_get(
            "/apis/apps/v1/namespaces/{ns}/replicasets/{name}", self._get("replicasets")
        )
        app.router.add_get("/api/v1/namespaces/{ns}/pods", self._list("pods"))
        app.router.add_get("/api/v1/namespaces/{ns}/pods/{name}", self._get("pods"))
        app.router.add_get("/api/v1/namespaces/{ns}/secrets", self._list("secrets"))
        app.router.add_get("/api/v1/namespaces/{ns}/secrets/{name}", self._get("secrets"))
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

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
    ) -> None:
        """A Deployment of Helm `release` (default: `name`), fully rolled out, with its pods."""
        image = image or f"harbor.example.org/toolforge/{name}:{version}"
        self._ns(namespace).deployments[name] = _Deployment(
            namespace, name, replicas, chart, version, image, release or name
        )

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
        d.old = (d.revision, d.image)
        d.version = version
        d.image = d.image.rsplit(":", 1)[0] + f":{version}"
        d.generation += 1
        d.revision += 1
        d.ready = False
        d.polls = 0
        d.ready_after_polls = ready_after_polls
        d.failure = failure

    def add_pod(self, namespace: str, pod: dict[str, Any]) -> None:
        self._ns(namespace).pods[pod["metadata"]["name"]] = pod

    def add_helm_release(
        self,
        namespace: str,
        release: str,
        revision: int,
        chart: str,
        version: str,
        status: str = "deployed",
    ) -> None:
        secret = helm_release_secret(namespace, release, revision, chart, version, status)
        self._ns(namespace).secrets[secret["metadata"]["name"]] = secret

    # --- object rendering ------------------------------------------------------------------

    def _tick(self, namespace: str) -> None:
        for d in self._ns(namespace).deployments.values():
            if d.ready:
                continue
            d.polls += 1
            if d.ready_after_polls is not None and d.polls >= d.ready_after_polls and not d.failure:
                d.ready, d.old = True, None

    def _deployment(self, d: _Deployment) -> dict[str, Any]:
        labels = {
            "app.kubernetes.io/name": d.name,
            "app.kubernetes.io/instance": d.instance,
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": f"{d.chart}-{d.version.replace('+', '_')}",
        }
        updated = d.replicas if d.ready else 0
        available = d.replicas if d.ready or d.old else 0
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": d.name,
                "namespace": d.namespace,
                "uid": _hash("deploy", d.namespace, d.name),
                "generation": d.generation,
                "labels": labels,
                "annotations": {_REVISION: str(d.revision)},
            },
            "spec": {
                "replicas": d.replicas,
                "selector": {"matchLabels": {"app.kubernetes.io/name": d.name}},
                "template": {
                    "metadata": {"labels": {"app.kubernetes.io/name": d.name}},
                    "spec": {"containers": [{"name": d.name, "image": d.image}]},
                },
            },
            "status": {
                "observedGeneration": d.generation,
                "replicas": d.replicas + (d.replicas if d.old else 0),
                "updatedReplicas": updated,
                "readyReplicas": available,
                "availableReplicas": available,
            },
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
            for i in range(rs["spec"]["replicas"]):
                pods.append(
                    pod_json(d.namespace, f"{rs['metadata']['name']}-{i}", rs, image, waiting)
                )
        return pods

    def _objects(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        ns = self._ns(namespace)
        if kind == "deployments":
            return [self._deployment(d) for d in ns.deployments.values()]
        if kind == "replicasets":
            return [rs for d in ns.deployments.values() for rs in self._replicasets(d)]
        if kind == "pods":
            owned = [p for d in ns.deployments.values() for p in self._pods_of(d)]
            return owned + list(ns.pods.values())
        return list(ns.secrets.values())

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

    def add_tls_secret(self, namespace: str, name: str, cert_pem: bytes) -> None:
        self._ns(namespace).secrets[name] = {
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": ""},
        }  # fmt: skip

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

    # --- HTTP ------------------------------------------------------------------------------

    @web.middleware
    async def _faults(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fault == "hang":
            await self._stopping.wait()
        if self.fault == "error" or self.fail_next > 0:
            self.fail_next = max(0, self.fail_next - 1)
            return _status(500, "InternalError", "injected fault")
        response: web.StreamResponse = await handler(request)
        return response

    def _list(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            namespace = request.match_info["ns"]
            if kind == "deployments":
                self._tick(namespace)
            items = [o for o in self._objects(kind, namespace) if _selected(o, request.query)]
            list_kind = {"deployments": "DeploymentList", "replicasets": "ReplicaSetList"}.get(
                kind, kind.capitalize()[:-1] + "List"
            )
            return web.json_response(
                {
                    "apiVersion": "apps/v1" if kind in ("deployments", "replicasets") else "v1",
                    "kind": list_kind,
                    "metadata": {"resourceVersion": str(len(self.requests))},
                    "items": [
                        {k: v for k, v in o.items() if k not in ("apiVersion", "kind")}
                        for o in items
                    ],
                }
            )

        return handler

    def _get(self, kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            namespace, name = request.match_info["ns"], request.match_info["name"]
            if kind == "deployments":
                self._tick(namespace)
            for o in self._objects(kind, namespace):
                if o["metadata"]["name"] == name:
                    return web.json_response(o)
            return _status(404, "NotFound", f'{kind} "{name}" not found')

        return handler


_REVISION = "deployment.kubernetes.io/revision"


def pod_json(
    namespace: str,
    name: str,
    owner_rs: dict[str, Any] | None,
    image: str,
    waiting: dict[str, str] | None = None,
    restarts: int = 0,
) -> dict[str, Any]:
    """A `v1` Pod, Running unless a container `waiting` state is given."""
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
                    "imageID": "",
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


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)
