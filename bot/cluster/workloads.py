"""Plain values for what the bot reads from a cluster: Deployments, pods and their problems.

`bot.cluster.kube` turns the API's objects into these; `!status`, the monitors and the live
version check work on them without a cluster (`FileCluster` builds them from a file).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Container waiting reasons that do not heal by waiting; a rollout showing one fails at once.
FAILING_REASONS = frozenset(
    "ImagePullBackOff ErrImagePull CrashLoopBackOff InvalidImageName"
    " CreateContainerConfigError CreateContainerError".split()
)
CHART_LABEL = "helm.sh/chart"
INSTANCE_LABEL = "app.kubernetes.io/instance"


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
    total: int | None = None  # status.replicas: old and new pods (None: as desired)

    @property
    def complete(self) -> bool:
        """The controller saw the newest spec, every desired replica is new and available,
        and no old replica is left."""
        total = self.desired if self.total is None else self.total
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.available == self.desired
            and total <= self.updated
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
    image_id: str = ""  # status.containerStatuses[].imageID: `<repo>@sha256:...` once pulled


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    owner_replicaset: str | None
    template_hash: str | None
    containers: tuple[ContainerState, ...]
    owner: tuple[str, str] | None = None  # (kind, name) of the controlling owner
    labels: Mapping[str, str] = field(default_factory=dict)
    terminating: bool = False  # deletionTimestamp set: shutting down


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


# --- from the API's objects (kubernetes client models) ---------------------------------------


def deployment_state(d: Any) -> DeploymentState:
    meta, status, spec = d.metadata, d.status, d.spec
    desired = spec.replicas if spec is not None and spec.replicas is not None else 1
    return DeploymentState(
        name=(meta.name if meta else None) or "",
        generation=(meta.generation if meta else None) or 0,
        observed_generation=(status.observed_generation if status else None) or 0,
        desired=desired,
        updated=(status.updated_replicas if status else None) or 0,
        available=(status.available_replicas if status else None) or 0,
        ready=(status.ready_replicas if status else None) or 0,
        labels=dict((meta.labels if meta else None) or {}),
        total=(status.replicas if status else None) or 0,
    )


def pod_state(p: Any) -> PodState:
    meta = p.metadata
    owners = (meta.owner_references if meta else None) or []
    controller = next((o for o in owners if o.controller), owners[0] if owners else None)
    owner = (controller.kind, controller.name) if controller is not None else None
    labels = dict((meta.labels if meta else None) or {})
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
                image_id=cs.image_id or "",
            )
        )
    return PodState(
        name=(meta.name if meta else None) or "",
        phase=(p.status.phase if p.status else None) or "Unknown",
        owner_replicaset=owner[1] if owner and owner[0] == "ReplicaSet" else None,
        template_hash=labels.get("pod-template-hash"),
        containers=tuple(containers),
        owner=owner,
        labels=labels,
        terminating=bool(meta and meta.deletion_timestamp),
    )
