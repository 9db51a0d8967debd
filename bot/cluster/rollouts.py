"""What rolled out in a namespace, and who changed it, read from the Kubernetes API: every
ReplicaSet of a Deployment (its pod-template-hash, revision, images and creation time) with
the manager that last changed its Deployment, and every Helm revision of a release (with
the description Helm wrote). The restart monitor compares these with what it saw before.

"Who": the Deployment's `metadata.managedFields` entry with the newest `time`, leaving out
the controllers that only write status (`kube-controller-manager`). A hand edit shows as
`kubectl-edit` or `kubectl-patch`, `kubectl rollout restart` as `kubectl-rollout`, Helm as
`helm`, a reloader as its own name. Helm release records carry no user, only a description
("Upgrade complete", "Rollback to 3").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.cluster.helmrecords import release_records
from bot.cluster.hygiene import parse_time
from bot.cluster.kube import KubeCluster
from bot.cluster.listcache import helm_secrets

REVISION = "deployment.kubernetes.io/revision"
CONTROLLERS = ("kube-controller-manager",)


@dataclass(frozen=True)
class Rollout:
    """One ReplicaSet (`kind` "ReplicaSet") or Helm revision (`kind` "Helm revision")."""

    kind: str
    key: str  # "rs/<name>" | "helm/<release>/<revision>"
    owner: str  # the Deployment or the Helm release
    name: str  # the ReplicaSet's name | the revision number
    revision: int
    created: datetime | None
    images: tuple[str, ...] = ()
    template_hash: str = ""
    by: str = ""  # the manager (ReplicaSets) | Helm's description
    version: str = ""  # the chart version (Helm revisions)


def last_manager(obj: Any) -> str:
    """The manager of the newest `managedFields` entry, controllers left out ("" if none)."""
    fields = [
        (parse_time(f.time), f.manager or "")
        for f in (obj.metadata.managed_fields if obj.metadata else None) or []
        if (f.manager or "") not in CONTROLLERS and f.time is not None
    ]
    dated = [(t, m) for t, m in fields if t is not None]
    return max(dated)[1] if dated else ""


def _revision(meta: Any) -> int:
    try:
        return int((meta.annotations or {}).get(REVISION, "0"))
    except ValueError:
        return 0


async def replicasets(cluster: KubeCluster, namespace: str, instance: str) -> list[Rollout]:
    """The ReplicaSets of the Deployments of Helm release `instance` (its
    `app.kubernetes.io/instance` label; a Deployment without that label counts too)."""
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    apps = k8s.AppsV1Api(await cluster.api())
    deployments = await cluster.call(
        f"list deployments in {namespace}", apps.list_namespaced_deployment, namespace
    )
    sets = await cluster.call(
        f"list replicasets in {namespace}", apps.list_namespaced_replica_set, namespace
    )
    owners = {
        d.metadata.name: last_manager(d)
        for d in deployments.items
        if d.metadata
        and (d.metadata.labels or {}).get("app.kubernetes.io/instance", instance) == instance
    }
    found = []
    for rs in sets.items:
        meta = rs.metadata
        owner = next((o.name for o in (meta.owner_references if meta else None) or []
                      if o.kind == "Deployment" and o.controller), None)  # fmt: skip
        if meta is None or owner is None or owner not in owners:
            continue
        spec = rs.spec.template.spec if rs.spec and rs.spec.template else None
        images = tuple(c.image for c in (spec.containers if spec else None) or [] if c.image)
        found.append(
            Rollout(
                "ReplicaSet",
                f"rs/{meta.name}",
                owner,
                meta.name or "?",
                _revision(meta),
                parse_time(meta.creation_timestamp),
                images,
                (meta.labels or {}).get("pod-template-hash", ""),
                owners[owner],
            )  # fmt: skip
        )
    return sorted(found, key=lambda r: (r.owner, r.revision))


async def helm_revisions(cluster: KubeCluster, namespace: str, release: str) -> list[Rollout]:
    """Every readable Helm revision of `release`, oldest first."""
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    core = k8s.CoreV1Api(await cluster.api())
    secrets = await cluster.call(
        f"list helm releases in {namespace}", core.list_namespaced_secret, namespace,
        label_selector=f"owner=helm,name={release}",
    )  # fmt: skip
    return [
        Rollout(
            "Helm revision",
            f"helm/{release}/{r.revision}",
            release,
            str(r.revision),
            r.revision,
            parse_time(r.deployed_at),
            by=r.description,
            version=r.chart_version,
        )  # fmt: skip
        for r in release_records(helm_secrets(secrets.items), release)
    ]
