"""The Cluster edge: what the bot reads from Kubernetes, through `kubernetes.aio`.

The deployer asks it to watch a rollout (`bot.cluster.watch`, judged by the kubectl rules in
`bot.cluster.rollout`) and to read the live chart version and the Helm release's state
(`bot.cluster.helmrecords`); `!status` and the monitors ask it for Deployments and pods. All
calls are asyncio, with per-request timeouts; transient failures are retried with backoff and
surface as one-line `ClusterError`s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp

from bot.cluster.helmrecords import (
    HelmRelease,
    ReleaseState,
    decode_helm_release,
    last_deployed,
    release_records,
    release_state,
)
from bot.cluster.listcache import SharedList, helm_secrets
from bot.cluster.rollout import Releases
from bot.cluster.watch import KINDS, Follower, watch_rollout
from bot.cluster.workloads import (
    CHART_LABEL,
    FAILING_REASONS,
    INSTANCE_LABEL,
    ContainerState,
    DeploymentState,
    PodProblem,
    PodState,
    chart_label_version,
    deployment_state,
    live_from_deployments,
    pod_state,
    problems_of,
)
from bot.core.tasks import within

if TYPE_CHECKING:  # kubernetes.aio (with the sync client's kubeconfig loader: ~14 MB) is
    # imported on first use, so a bot with no cluster configured (the demo) never loads it
    from kubernetes.aio import client as k8s

__all__ = [
    "CHART_LABEL",
    "FAILING_REASONS",
    "INSTANCE_LABEL",
    "ClusterError",
    "ContainerState",
    "DeploymentState",
    "HelmRelease",
    "KubeCluster",
    "PodProblem",
    "PodState",
    "ReleaseState",
    "RolloutResult",
    "chart_label_version",
    "decode_helm_release",
    "live_from_deployments",
    "problems_of",
]

T = TypeVar("T")
HELM_OWNER = "owner=helm"  # the label Helm itself puts on its release Secrets
DOWN_HOLD = 30.0  # seconds a cluster that failed all attempts of a call gets one attempt per call
LIST_REUSE = 0.0  # a list answers the questions asked while it is in flight, not later ones


class ClusterError(Exception):
    """The Kubernetes API could not answer; the message is one line without secrets."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the API's HTTP status when it refused (4xx), else None


def _refused_scope(exc: BaseException) -> bool:
    """The API refuses a cluster-wide list (namespaced RBAC, or an API without it)."""
    return isinstance(exc, ClusterError) and exc.status in (401, 403, 404, 405)


@dataclass(frozen=True)
class RolloutResult:
    ok: bool
    summary: str
    details: tuple[str, ...] = ()


Loader = Callable[[], Awaitable["k8s.ApiClient"]]


class KubeCluster:
    """Read-only view of one cluster (one kubeconfig context)."""

    def __init__(
        self,
        api_client: k8s.ApiClient | Loader,
        *,
        request_timeout: float = 10.0,
        attempts: int = 3,
        backoff: float = 0.5,
        watch_seconds: int = 60,
    ) -> None:
        """`api_client`: a `kubernetes.aio` client, or an async function making one (loaded
        on first use: loading a kubeconfig may run an auth plugin)."""
        from kubernetes.aio import client as k8s

        self._client: k8s.ApiClient | None = None
        self._loader: Loader | None = None
        if isinstance(api_client, k8s.ApiClient):
            self._client = api_client
        else:
            self._loader = api_client
        self._loading = asyncio.Lock()
        # kubernetes.aio loads its API classes on first touch (about 0.5 s of imports): here,
        # at start-up, not in the first `!status` after it
        self._api_classes = (k8s.AppsV1Api, k8s.CoreV1Api)
        self._timeout = request_timeout
        self._attempts = attempts
        self._backoff = backoff
        # after a call failed all its attempts, the next calls until this monotonic time try
        # once: an API server that is down must not cost every namespace of a round its backoff
        self._down_until = 0.0
        self._watch_seconds = watch_seconds
        self._deployments = SharedList(self._list_deployments, self._deployments_in,
                                       _refused_scope, reuse=LIST_REUSE)  # fmt: skip
        self._secrets = SharedList(self._list_secrets, self._secrets_in, _refused_scope,
                                   reuse=LIST_REUSE)  # fmt: skip

    @classmethod
    def from_kubeconfig(
        cls, config_file: str | None, context: str | None, **kwargs: Any
    ) -> KubeCluster:
        """Check the kubeconfig file and context now (a missing context is a ClusterError);
        the client is made on first use. Retries are ours, not the client's."""
        from kubernetes.aio import client as k8s
        from kubernetes.aio.config import kube_config
        from kubernetes.aio.config.config_exception import ConfigException

        try:
            contexts, current = kube_config.list_kube_config_contexts(config_file)
        except (ConfigException, OSError, ValueError) as e:
            raise ClusterError(f"cannot load kubeconfig context {context!r}: {e}") from None
        names = {c.get("name") for c in contexts or []}
        wanted = context or (current or {}).get("name")
        if wanted not in names:
            raise ClusterError(f"cannot load kubeconfig context {context!r}: not in the kubeconfig")

        async def load() -> k8s.ApiClient:
            configuration = k8s.Configuration()
            configuration.retries = None
            await kube_config.load_kube_config(
                config_file=config_file,
                context=context,
                client_configuration=configuration,
                persist_config=False,
            )
            return k8s.ApiClient(configuration=configuration)

        return cls(load, **kwargs)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def _api(self) -> k8s.ApiClient:
        if self._client is None:
            from kubernetes.aio.config.config_exception import ConfigException

            async with self._loading:
                if self._client is None:
                    assert self._loader is not None
                    try:
                        self._client = await self._loader()
                    except (ConfigException, OSError, ValueError) as e:
                        raise ClusterError(f"cannot load kubeconfig: {e}") from None
        return self._client

    async def warm(self) -> None:
        """Make the client now (read the kubeconfig, run its auth plugin, load its CA), as
        the app does in the background of its start, so the first `!status` or deploy does
        not wait for it. A failure is said by the first call that needs the client."""
        with contextlib.suppress(ClusterError):
            await self._api()

    async def api(self) -> k8s.ApiClient:
        """The API client, for other API groups (`bot.cluster.hygiene`, `bot.cluster.podlogs`)."""
        return await self._api()

    async def call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        """One API call of another API group, with the same retries as the cluster's own."""
        return await self._call(what, fn, *args, **kw)

    async def _where(self) -> str:
        parts = urlsplit((await self._api()).configuration.host or "")
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"

    async def _call(self, what: str, fn: Callable[..., Awaitable[T]], *args: Any, **kw: Any) -> T:
        """One API call; connection errors, timeouts, 429 and 5xx are retried with backoff,
        except while the API is known down (a call failed all its attempts in the last
        `DOWN_HOLD` seconds): then one attempt, so a round over many namespaces fails fast."""
        from kubernetes.aio.client.exceptions import ApiException

        down = time.monotonic() < self._down_until
        attempts = 1 if down else self._attempts
        last = ""
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                result = await within(
                    fn(*args, _request_timeout=self._timeout, **kw), self._timeout + 1
                )
            except ApiException as e:
                if e.status is not None and e.status < 500 and e.status != 429:
                    raise ClusterError(f"{what}: HTTP {e.status} {e.reason}", e.status) from None
                last = f"HTTP {e.status} {e.reason}"
            except (aiohttp.ClientError, OSError, TimeoutError) as e:
                last = _network_reason(e)
            else:
                self._down_until = 0.0
                return result
        self._down_until = time.monotonic() + DOWN_HOLD
        where = await self._where()
        if down:
            raise ClusterError(
                f"{what}: Kubernetes API at {where} failed ({last}; it is failing, not retried)"
            )
        raise ClusterError(f"{what}: Kubernetes API at {where} failed {attempts} times ({last})")

    async def _apps(self) -> k8s.AppsV1Api:
        from kubernetes.aio import client as k8s

        return k8s.AppsV1Api(await self._api())

    async def _core(self) -> k8s.CoreV1Api:
        from kubernetes.aio import client as k8s

        return k8s.CoreV1Api(await self._api())

    def forget(self) -> None:
        """Read Deployments and release records anew on the next question."""
        self._deployments.forget()
        self._secrets.forget()

    async def deployments(self, namespace: str) -> list[DeploymentState]:
        """From the cluster's one shared list of Deployments (bot.cluster.listcache)."""
        return [deployment_state(d) for d in await self._deployments.in_namespace(namespace)]

    async def _list_deployments(self) -> Any:
        apps = await self._apps()
        return await self._call("list deployments", apps.list_deployment_for_all_namespaces)

    async def _deployments_in(self, namespace: str) -> Any:
        apps = await self._apps()
        return await self._call(
            f"list deployments in {namespace}", apps.list_namespaced_deployment, namespace
        )

    async def _list_secrets(self) -> Any:
        core = await self._core()
        return await self._call("list helm releases", core.list_secret_for_all_namespaces,
                                label_selector=HELM_OWNER)  # fmt: skip

    async def _secrets_in(self, namespace: str) -> Any:
        core = await self._core()
        return await self._call(f"list helm releases in {namespace}",
                                core.list_namespaced_secret, namespace,
                                label_selector=HELM_OWNER)  # fmt: skip

    async def pods(self, namespace: str) -> list[PodState]:
        core = await self._core()
        result = await self._call(f"list pods in {namespace}", core.list_namespaced_pod, namespace)
        return [pod_state(p) for p in result.items]

    async def helm_records(self, namespace: str, release: str) -> list[HelmRelease]:
        """Every readable record of `release` (oldest first), from Helm's release Secrets
        (the cluster's one shared list of them)."""
        secrets = helm_secrets(await self._secrets.in_namespace(namespace))
        mine = [s for s in secrets if ((s.metadata.labels or {}).get("name")) == release]
        return release_records(mine, release)

    helm_history = helm_records  # what `helm history` shows, read without helm

    async def helm_release(self, namespace: str, release: str) -> HelmRelease | None:
        """The newest deployed revision of `release`."""
        return last_deployed(await self.helm_records(namespace, release))

    async def release_state(self, namespace: str, release: str) -> ReleaseState | None:
        """The newest record of `release` and its newest deployed one (None: no records)."""
        return release_state(namespace, await self.helm_records(namespace, release))

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

    async def wait_rollout(
        self,
        namespace: str,
        *,
        timeout: float,  # noqa: ASYNC109 - the rollout deadline is the product's setting
        releases: Releases | None = None,
    ) -> RolloutResult:
        """Watch until every Deployment, StatefulSet and DaemonSet in `namespace` (of
        `releases`, when given) is rolled out (kubectl's rules), one fails, a new pod fails,
        or `timeout` seconds pass."""
        apps, core = await self._apps(), await self._core()
        listers = {
            "deployments": apps.list_namespaced_deployment,
            "statefulsets": apps.list_namespaced_stateful_set,
            "daemonsets": apps.list_namespaced_daemon_set,
            "replicasets": apps.list_namespaced_replica_set,
            "pods": core.list_namespaced_pod,
        }
        changed = asyncio.Event()

        def follower(kind: str) -> Follower:
            lister = listers[kind]

            async def list_once() -> Any:
                return await self._call(f"list {kind} in {namespace}", lister, namespace)

            return Follower(kind, lister, namespace, changed, list_once,
                            watch_seconds=self._watch_seconds, backoff=self._backoff)  # fmt: skip

        followers = {kind: follower(kind) for kind in KINDS}
        outcome = await watch_rollout(followers, changed, timeout, releases)
        if outcome.judgement is not None:
            j = outcome.judgement
            return RolloutResult(j.state == "done", j.summary, j.details)
        progress = outcome.last.summary if outcome.last is not None else "no answer"
        summary = f"rollout not complete after {timeout:g}s: {progress}"
        if outcome.error:
            summary += f" (last error: {outcome.error})"
        details = outcome.last.details if outcome.last is not None else ()
        return RolloutResult(False, summary, details)


def _network_reason(e: BaseException) -> str:
    """A short cause for a network failure, without URLs or headers."""
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, aiohttp.ClientConnectionError | ConnectionError):
        return "connection refused or reset"
    return type(e).__name__
