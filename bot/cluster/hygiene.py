"""What the builds-api incident mail asked to watch in managed namespaces: workloads with two
or more replicas and no PodDisruptionBudget (a node drain may take them all down at once),
certificates close to expiry (cert-manager Certificates' `status.notAfter`, and the
certificate of `kubernetes.io/tls` Secrets), and pods that mount a TLS Secret changed after
they started (a renewal: they still serve the old certificate and will restart to pick up
the new one). Read-only, through the same client and retries as `KubeCluster`.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.cluster.kube import ClusterError, KubeCluster

_FRACTION_RE = re.compile(r"\.[0-9]+")
_PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class Unprotected:
    kind: str  # Deployment | StatefulSet
    name: str
    replicas: int


@dataclass(frozen=True)
class StaleMount:
    """A TLS Secret that changed after the pods mounting it started."""

    secret: str
    changed_at: datetime  # the Secret's last change (see `secret_changed_at`)
    not_after: datetime | None  # the stored (new) certificate's notAfter
    pods: tuple[str, ...]  # started before the change, oldest first
    images: tuple[str, ...]  # what those pods' containers pull when they restart


@dataclass(frozen=True)
class CertInfo:
    name: str
    source: str  # Certificate | Secret
    not_after: datetime


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels and matchExpressions) against a pod template's labels."""
    if selector is None:
        return False
    for key, value in (selector.match_labels or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.match_expressions or []:
        have, values = labels.get(expr.key), expr.values or []
        ok = {
            "In": have in values,
            "NotIn": have not in values,
            "Exists": expr.key in labels,
            "DoesNotExist": expr.key not in labels,
        }.get(expr.operator, False)
        if not ok:
            return False
    return True


def _der_item(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the DER item at `pos`."""
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    return tag, pos, pos + length


def _der_time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    fmt = "%y%m%d%H%M%SZ" if tag == 0x17 else "%Y%m%d%H%M%SZ"  # UTCTime | GeneralizedTime
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def cert_not_after(pem: bytes) -> datetime | None:
    """The notAfter of the first certificate in PEM text (None when it cannot be read)."""
    m = _PEM_RE.search(pem)
    if m is None:
        return None
    try:
        der = base64.b64decode(b"".join(m.group(1).split()))
        _, pos, _ = _der_item(der, 0)  # Certificate
        _, pos, _ = _der_item(der, pos)  # tbsCertificate
        if der[pos] == 0xA0:  # [0] version
            pos = _der_item(der, pos)[2]
        for _ in range(3):  # serialNumber, signature, issuer
            pos = _der_item(der, pos)[2]
        _, pos, _ = _der_item(der, pos)  # validity
        pos = _der_item(der, pos)[2]  # notBefore
        tag, start, end = _der_item(der, pos)
        return _der_time(tag, der[start:end])
    except (IndexError, ValueError, binascii.Error):
        return None


async def unprotected_workloads(cluster: KubeCluster, namespace: str) -> list[Unprotected]:
    """Deployments and StatefulSets with >= 2 replicas whose pods no PodDisruptionBudget
    selects."""
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    apps = k8s.AppsV1Api(await cluster.api())
    policy = k8s.PolicyV1Api(await cluster.api())
    deployments = await cluster.call(
        f"list deployments in {namespace}", apps.list_namespaced_deployment, namespace
    )
    budgets = await cluster.call(
        f"list PodDisruptionBudgets in {namespace}",
        policy.list_namespaced_pod_disruption_budget,
        namespace,
    )
    try:
        statefulsets = await cluster.call(
            f"list statefulsets in {namespace}", apps.list_namespaced_stateful_set, namespace
        )
        sets: list[Any] = list(statefulsets.items)
    except ClusterError as exc:
        if "HTTP 404" not in str(exc):
            raise
        sets = []
    selectors = [b.spec.selector for b in budgets.items if b.spec is not None]
    found = []
    kinds = [("Deployment", d) for d in deployments.items] + [("StatefulSet", s) for s in sets]
    for kind, d in kinds:
        replicas = (d.spec.replicas if d.spec.replicas is not None else 1) if d.spec else 0
        labels = (
            (d.spec.template.metadata.labels or {}) if d.spec and d.spec.template.metadata else {}
        )
        if replicas >= 2 and not any(selector_matches(s, labels) for s in selectors):
            name = d.metadata.name if d.metadata and d.metadata.name else "?"
            found.append(Unprotected(kind, name, replicas))
    return found


async def certificates(cluster: KubeCluster, namespace: str) -> list[CertInfo]:
    """cert-manager Certificates (when the CRD is there) and TLS Secrets, with expiry."""
    found: list[CertInfo] = []
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    custom = k8s.CustomObjectsApi(await cluster.api())
    try:
        got: Any = await cluster.call(
            f"list Certificates in {namespace}", custom.list_namespaced_custom_object,
            "cert-manager.io", "v1", namespace, "certificates",
        )  # fmt: skip
    except ClusterError as exc:
        if "HTTP 404" not in str(exc):  # no cert-manager here: only Secrets to look at
            raise
        got = {"items": []}
    for item in got.get("items") or []:
        not_after = (item.get("status") or {}).get("notAfter")
        if not_after:
            when = datetime.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            found.append(CertInfo(item["metadata"]["name"], "Certificate", when))
    for s in await _tls_secrets(cluster, namespace):
        when_s = _tls_not_after(s)
        if when_s is not None:
            found.append(CertInfo(s.metadata.name or "?", "Secret", when_s))
    return found


def parse_time(value: Any) -> datetime | None:
    """A client model's datetime, or an RFC 3339 string, as an aware datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        text = _FRACTION_RE.sub(lambda m: m.group(0)[:7], value.replace("Z", "+00:00"))
        try:
            parsed = datetime.fromisoformat(text)  # Helm writes nanoseconds: cut to micro
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def secret_changed_at(secret: Any) -> datetime | None:
    """When a Secret last changed: the newest `metadata.managedFields[].time` (the API server
    stamps the entry of every manager that writes it: cert-manager's
    `cert-manager-certificates-issuing` on a renewal, `kubectl` on a hand edit), else its
    `creationTimestamp`. cert-manager's `cert-manager.io/*` annotations on the Secret name the
    Certificate and issuer, not when it was issued, so they do not say this."""
    meta = secret.metadata
    if meta is None:
        return None
    times = [parse_time(f.time) for f in meta.managed_fields or []]
    known = [t for t in times if t is not None]
    return max(known) if known else parse_time(meta.creation_timestamp)


def mounted_secrets(pod: Any) -> set[str]:
    """The Secrets a pod mounts as volumes (directly or through a projected volume)."""
    names: set[str] = set()
    for volume in (pod.spec.volumes if pod.spec else None) or []:
        if volume.secret is not None and volume.secret.secret_name:
            names.add(volume.secret.secret_name)
        for source in (volume.projected.sources or []) if volume.projected else []:
            if source.secret is not None and source.secret.name:
                names.add(source.secret.name)
    return names


async def _tls_secrets(cluster: KubeCluster, namespace: str) -> list[Any]:
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    core = k8s.CoreV1Api(await cluster.api())
    secrets = await cluster.call(
        f"list TLS secrets in {namespace}", core.list_namespaced_secret, namespace,
        field_selector="type=kubernetes.io/tls",
    )  # fmt: skip
    return [s for s in secrets.items if s.type == "kubernetes.io/tls" and s.metadata]


def _tls_not_after(secret: Any) -> datetime | None:
    data = secret.data or {}
    try:
        return cert_not_after(base64.b64decode(data.get("tls.crt") or ""))
    except binascii.Error:
        return None


async def stale_tls_mounts(cluster: KubeCluster, namespace: str) -> list[StaleMount]:
    """TLS Secrets changed after some running pod that mounts them started
    (`status.startTime`); terminating pods and pods not started yet do not count."""
    secrets = await _tls_secrets(cluster, namespace)
    if not secrets:
        return []
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    core = k8s.CoreV1Api(await cluster.api())
    pods = await cluster.call(f"list pods in {namespace}", core.list_namespaced_pod, namespace)
    found = []
    for secret in secrets:
        changed = secret_changed_at(secret)
        if changed is None:
            continue
        stale: list[tuple[datetime, str, list[str]]] = []
        for pod in pods.items:
            meta, status = pod.metadata, pod.status
            if meta is None or meta.deletion_timestamp is not None or status is None:
                continue
            started = parse_time(status.start_time)
            if started is None or started >= changed:
                continue
            if secret.metadata.name in mounted_secrets(pod):
                containers = (pod.spec.containers if pod.spec else None) or []
                stale.append((started, meta.name or "?", [c.image for c in containers if c.image]))
        if stale:
            stale.sort()
            images = tuple(dict.fromkeys(i for _, _, imgs in stale for i in imgs))
            found.append(
                StaleMount(
                    secret.metadata.name or "?",
                    changed,
                    _tls_not_after(secret),
                    tuple(name for _, name, _ in stale),
                    images,
                )  # fmt: skip
            )
    return found
