"""The Cluster edge: what the bot reads from Kubernetes, through the official client.

The deployer asks it to watch a rollout and to read the live chart version; the monitors ask
it for unhealthy pods. The blocking `kubernetes` client runs in threads with per-request
timeouts; transient failures are retried with backoff and surface as one-line `ClusterError`s.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")

# Container waiting reasons that do not heal by waiting; a rollout showing one fails at once.
FAILING_REASONS = frozenset(
    "ImagePullBackOff ErrImagePull CrashLoopBackOff InvalidImageName"
    " CreateContainerConfigError CreateContainerError".split()
)
CHART_LABEL = "helm.sh/chart"
INSTANCE_LABEL = "app.kubernetes.io/instance"
_REVISION_ANNOTATION = "deployment.kubernetes.io/revision"


class ClusterError(Exception):
    """The Kubernetes API could not answer; the message is one line without secrets."""


@dataclass(frozen=True)
class DeploymentState:
    name: str
    generation: int
    observed_generation: int
    desired: int
    updated: int
    available: int
    ready: int
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """The controller saw the newest spec and every desired replica is new and available."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.available == self.desired
        )

    def progress(self) -> str:
        return (
            f"{self.name} {self.updated}/{self.desired} updated, "
            f"{self.available}/{self.desired} available"
        )


@dataclass(frozen=True)
class ContainerState:
    name: str
    image: str
    ready: bool
    restart_count: int
    waiting_reason: str | None = None
    waiting_message: str | None = None


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    owner_replicaset: str | None
    template_hash: str | None
    containers: tuple[ContainerState, ...]


@dataclass(frozen=True)
class PodProblem:
    pod: str
    container: str
    reason: str
    message: str
    restarts: int

    def describe(self) -> str:
        text = f"pod {self.pod}: {self.reason}"
        if self.message:
            text += f": {self.message}"
        return " ".join(text.split())  # one line


@dataclass(frozen=True)
class HelmRelease:
    name: str
    revision: int
    chart: str
    chart_version: str
    app_version: str
    status: str


@dataclass(frozen=True)
class RolloutResult:
    ok: bool
    summary: str
    details: tuple[str, ...] = ()


def decode_helm_release(data: str) -> dict[str, Any]:
    """Decode a Secret's `data.release`: base64 (Secret) of base64 (Helm) of gzip'd JSON."""
    raw = base64.b64decode(base64.b64decode(data))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def chart_label_version(label: str, chart_name: str) -> str | None:
    """`builds-api-0.0.131-20240101-abc` -> `0.0.131-...`; Helm writes `+` as `_` in labels."""
    prefix = f"{chart_name}-"
    rest = label[len(prefix) :] if label.startswith(prefix) else ""
    if not re.match(r"v?\d", rest):  # upstream charts tag `v1.12.0`
        return None
    return rest.replace("_", "+")


def problems_of(pods: list[PodState], *, restart_threshold: int | None = None) -> list[PodProblem]:
    """Containers waiting for a failing reason, or restarted more than `restart_threshold`."""
    found = []
    for pod in pods:
        for c in pod.containers:
            if c.waiting_reason in FAILING_REASONS:
                found.append(
                    PodProblem(
                        pod.name, c.name, c.waiting_reason, c.waiting_message or "", c.restart_count
                    )
                )
            elif restart_threshold is not None and c.restart_count > restart_threshold:
                found.append(
                    PodProblem(
                        pod.name,
                        c.name,
                        "Restarting",
                        f"{c.restart_count} restarts",
                        c.restart_count,
                    )
                )
    return found


def _meta(obj: Any) -> k8s.V1ObjectMeta:
    meta: k8s.V1ObjectMeta = obj.metadata or k8s.V1ObjectMeta()
    return meta


def _deployment_state(d: k8s.V1Deployment) -> DeploymentState:
    status = d.status or k8s.V1DeploymentStatus()
    spec_replicas = d.spec.replicas if d.spec and d.spec.replicas is not None else 1
    meta = _meta(d)
    return DeploymentState(
        name=meta.name or "",
        generation=meta.generation or 0,
        observed_generation=status.observed_generation or 0,
        desired=spec_replicas,
        updated=status.updated_replicas or 0,
        available=status.available_replicas or 0,
        ready=status.ready_replicas or 0,
        labels=dict(meta.labels or {}),
    )


def _pod_state(p: k8s.V1Pod) -> PodState:
    meta = _meta(p)
    owner = next((o.name for o in meta.owner_references or [] if o.kind == "ReplicaSet"), None)
    containers = []
    for cs in (p.status.container_statuses if p.status else None) or []:
        waiting = cs.state.waiting if cs.state else None
        containers.append(
            ContainerState(
                name=cs.name,
                image=cs.image,
                ready=bool(cs.ready),
                restart_count=cs.restart_count or 0,
                waiting_reason=waiting.reason if waiting else None,
                waiting_message=waiting.message if waiting else None,
            )
        )
    return PodState(
        name=meta.name or "",
        phase=(p.status.phase if p.status else None) or "Unknown",
        owner_replicaset=owner,
        template_hash=(meta.labels or {}).get("pod-template-hash"),
        containers=tuple(containers),
    )


def _newest_replicasets(replicasets: list[k8s.V1ReplicaSet], deployments: list[str]) -> set[str]:
    """Per Deployment, the name of its ReplicaSet with the highest revision annotation."""
    best: dict[str, tuple[int, str]] = {}
    for rs in replicasets:
        meta = _meta(rs)
        revision = int((meta.annotations or {}).get(_REVISION_ANNOTATION, "0") or 0)
        for owner in meta.owner_references or []:
            if owner.kind == "Deployment" and owner.name in deployments:
                if owner.name not in best or revision > best[owner.name][0]:
                    best[owner.name] = (revision, meta.name or "")
    if any(d not in best for d in deployments):
        return set()  # ownership unknown for some Deployment: the caller checks every pod
    return {name for _, name in best.values()}


class KubeCluster:
    """Read-only view of one cluster (one kubeconfig context)."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        request_timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
    ) -> None:
        self._api_client = api_client
        self._apps = k8s.AppsV1Api(api_client)
        self._core = k8s.CoreV1Api(api_client)
        self._timeout = request_timeout
        self._attempts = attempts
        self._backoff = backoff
        parts = urlsplit(api_client.configuration.host or "")
        self._where = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )

    @classmethod
    def from_kubeconfig(
        cls, config_file: str | None, context: str | None, **kwargs: Any
    ) -> KubeCluster:
        """Build from a kubeconfig file and context (None: the defaults kubectl would use).

        urllib3's own retries are turned off: `KubeCluster` retries with backoff itself.
        """
        configuration = k8s.Configuration()
        configuration.retries = 0
        try:
            api_client = k8s_config.new_client_from_config(
                config_file=config_file,
                context=context,
                persist_config=False,
                client_configuration=configuration,
            )
        except (k8s_config.ConfigException, OSError) as e:
            raise ClusterError(f"cannot load kubeconfig context {context!r}: {e}") from None
        return cls(api_client, **kwargs)

    def close(self) -> None:
        self._api_client.close()

    @property
    def api_client(self) -> k8s.ApiClient:
        return self._api_client

    async def call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One API call of another API group (`bot.cluster.hygiene`), with the same retries."""
        return await self._call(what, fn, *args, **kwargs)

    async def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one blocking API call in a thread; retry connection errors, timeouts and 5xx."""
        last = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                return await asyncio.wait_for(
                    asyncio.to_thread(fn, *args, _request_timeout=self._timeout, **kwargs),
                    timeout=self._timeout + 1,
                )
            except ApiException as e:
                if e.status is not None and e.status < 500 and e.status != 429:
                    raise ClusterError(f"{what}: HTTP {e.status} {e.reason}") from None
                last = f"HTTP {e.status} {e.reason}"
            except (urllib3.exceptions.HTTPError, OSError, TimeoutError) as e:
                last = _network_reason(e)
        raise ClusterError(
            f"{what}: Kubernetes API at {self._where} failed {self._attempts} times ({last})"
        )

    async def deployments(self, namespace: str) -> list[DeploymentState]:
        result = await self._call(
            f"list deployments in {namespace}", self._apps.list_namespaced_deployment, namespace
        )
        return [_deployment_state(d) for d in result.items]

    async def pods(self, namespace: str) -> list[PodState]:
        result = await self._call(
            f"list pods in {namespace}", self._core.list_namespaced_pod, namespace
        )
        return [_pod_state(p) for p in result.items]

    async def helm_release(self, namespace: str, release: str) -> HelmRelease | None:
        """The newest deployed revision of `release`, from Helm's release Secrets."""
        result = await self._call(
            f"list helm releases in {namespace}",
            self._core.list_namespaced_secret,
            namespace,
            label_selector=f"owner=helm,name={release}",
        )
        best: HelmRelease | None = None
        for secret in result.items:
            data = (secret.data or {}).get("release")
            if secret.type not in (None, "helm.sh/release.v1") or not isinstance(data, str):
                continue
            try:
                record = decode_helm_release(data)
            except (ValueError, OSError, EOFError):
                continue  # not a Helm record we can read; never fatal
            meta = record.get("chart", {}).get("metadata", {})
            status = record.get("info", {}).get("status", "")
            if record.get("name") != release or status != "deployed":
                continue
            candidate = HelmRelease(
                name=release,
                revision=int(record.get("version", 0)),
                chart=meta.get("name", ""),
                chart_version=meta.get("version", ""),
                app_version=meta.get("appVersion", "") or "",
                status=status,
            )
            if best is None or candidate.revision > best.revision:
                best = candidate
        return best

    async def live_version(self, namespace: str, release: str, chart_name: str) -> str | None:
        """The chart version running: from Deployments' `helm.sh/chart`, else the Helm record.

        If Deployments disagree, returns `mixed: <name>=<version>, ...` (never equal to a pin).
        """
        version = live_from_deployments(await self.deployments(namespace), release, chart_name)
        if version is not None:
            return version
        record = await self.helm_release(namespace, release)
        return record.chart_version if record and record.chart == chart_name else None

    async def unhealthy_pods(
        self, namespace: str, *, restart_threshold: int = 5
    ) -> list[PodProblem]:
        return problems_of(await self.pods(namespace), restart_threshold=restart_threshold)

    async def _rollout_problems(
        self, namespace: str, deployments: list[DeploymentState]
    ) -> list[PodProblem]:
        pending = [d.name for d in deployments if not d.complete]
        replicasets = await self._call(
            f"list replicasets in {namespace}", self._apps.list_namespaced_replica_set, namespace
        )
        newest = _newest_replicasets(replicasets.items, pending)
        pods = await self.pods(namespace)
        if newest:
            pods = [p for p in pods if p.owner_replicaset in newest]
        return problems_of(pods)

    async def wait_rollout(
        self,
        namespace: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the rollout deadline is the product's setting
        poll: float = 1.0,
    ) -> RolloutResult:
        """Poll until every Deployment is fully rolled out, a new pod fails, or `timeout`."""
        last: list[DeploymentState] = []
        last_error = ""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # The deadline is checked on every round, not only enforced by cancellation: in
        # Python 3.11 a cancellation racing a finishing `wait_for` can be lost, and a
        # fast poll loop would then run forever.
        while (remaining := deadline - loop.time()) > 0:
            try:
                last = await asyncio.wait_for(self.deployments(namespace), remaining)
                if all(d.complete for d in last):
                    done = ", ".join(f"{d.name} {d.available}/{d.desired}" for d in last)
                    summary = f"rollout complete: {done or 'no Deployments'}"
                    return RolloutResult(True, summary, tuple(d.progress() for d in last))
                problems = await asyncio.wait_for(
                    self._rollout_problems(namespace, last), max(deadline - loop.time(), 0.001)
                )
                last_error = ""
            except TimeoutError:
                break
            except ClusterError as e:
                last_error, problems = str(e), []
            if problems:
                details = tuple(p.describe() for p in problems)
                return RolloutResult(False, details[0], details)
            await asyncio.sleep(min(poll, max(deadline - loop.time(), 0.0)))
        progress = ", ".join(d.progress() for d in last if not d.complete)
        summary = f"rollout not complete after {timeout:g}s: {progress or 'no answer'}"
        if last_error:
            summary += f" (last error: {last_error})"
        return RolloutResult(False, summary, tuple(d.progress() for d in last))


def _network_reason(e: BaseException) -> str:
    """A short cause for a network failure, without URLs or headers."""
    if isinstance(e, urllib3.exceptions.MaxRetryError) and e.reason is not None:
        e = e.reason
    if isinstance(e, TimeoutError | urllib3.exceptions.TimeoutError):
        return "timed out"
    if isinstance(e, urllib3.exceptions.NewConnectionError | ConnectionError):
        return "connection refused or reset"
    return type(e).__name__


def live_from_deployments(
    deployments: list[DeploymentState], release: str, chart_name: str
) -> str | None:
    """The chart version the release's Deployments carry (`helm.sh/chart`), None when no
    Deployment is labelled, `mixed: <name>=<version>, ...` when they disagree."""
    versions: dict[str, str] = {}
    for d in deployments:
        instance = d.labels.get(INSTANCE_LABEL)
        if instance is not None and instance != release:
            continue
        version = chart_label_version(d.labels.get(CHART_LABEL, ""), chart_name)
        if version is not None:
            versions[d.name] = version
    if len(set(versions.values())) == 1:
        return next(iter(versions.values()))
    if versions:
        return "mixed: " + ", ".join(f"{n}={v}" for n, v in sorted(versions.items()))
    return None
