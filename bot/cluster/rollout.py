"""Is a rollout done? The rules of `kubectl rollout status`, as plain functions.

Each workload gets a `Verdict` from its own object, as kubectl's status viewers decide it:

- Deployment: the controller observed the newest generation; not past its progress
  deadline (condition Progressing with reason `ProgressDeadlineExceeded` fails it);
  `updatedReplicas` reached `spec.replicas`; no old replica left (`status.replicas` above
  `updatedReplicas` means old pods are still terminating); every updated replica available.
- StatefulSet (RollingUpdate): generation observed; `readyReplicas` reached `spec.replicas`;
  with a partition, the pods from the partition up are updated; without one, every pod is
  updated and `currentRevision` equals `updateRevision`. OnDelete ones are not waited for.
- DaemonSet (RollingUpdate): generation observed; `updatedNumberScheduled` and
  `numberAvailable` reached `desiredNumberScheduled`.

`judge` puts the verdicts together with the pods: a pending workload whose *new* pods wait
for ImagePullBackOff, ErrImagePull, CrashLoopBackOff, ... fails the rollout at once, quoting
the reason; old pods never do. With `Releases`, only the workloads of the component's Helm
releases are judged (by `app.kubernetes.io/instance` or the configured label), so another
component in the same namespace never decides this one's verdict. The watch loop
(`bot.cluster.watch`) feeds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.cluster.workloads import INSTANCE_LABEL, PodState, problems_of

State = Literal["done", "progressing", "failed"]
DEADLINE_REASON = "ProgressDeadlineExceeded"
_REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Verdict:
    kind: str  # Deployment | StatefulSet | DaemonSet
    name: str
    state: State
    message: str  # done: "name 2/2"; else what it waits for, or why it failed


@dataclass(frozen=True)
class Judgement:
    state: State
    summary: str
    details: tuple[str, ...] = ()


def _int(value: int | None, default: int = 0) -> int:
    return default if value is None else int(value)


def deployment_verdict(d: Any) -> Verdict:
    name = d.metadata.name or ""
    status, spec = d.status, d.spec
    desired = _int(spec.replicas if spec else None, 1)
    generation = _int(d.metadata.generation)
    observed = _int(status.observed_generation if status else None)

    def wait(message: str) -> Verdict:
        return Verdict("Deployment", name, "progressing", message)

    if status is None or generation > observed:
        return wait(f"{name} generation {generation} not yet observed")
    progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
    if progressing is not None and progressing.reason == DEADLINE_REASON:
        detail = f": {progressing.message}" if progressing.message else ""
        return Verdict("Deployment", name, "failed", f"{name}: {DEADLINE_REASON}{detail}")
    updated = _int(status.updated_replicas)
    available = _int(status.available_replicas)
    total = _int(status.replicas)
    counts = f"{name} {updated}/{desired} updated, {available}/{desired} available"
    if updated < desired:
        return wait(counts)
    if total > updated:
        old = total - updated
        return wait(f"{counts}, {old} old replica{'s' if old != 1 else ''} still terminating")
    if available < updated:
        return wait(counts)
    return Verdict("Deployment", name, "done", f"{name} {available}/{desired}")


def statefulset_verdict(s: Any) -> Verdict:
    name = s.metadata.name or ""
    label = f"statefulset {name}"
    status, spec = s.status, s.spec
    strategy = spec.update_strategy if spec else None
    if strategy is not None and strategy.type not in (None, "RollingUpdate"):
        return Verdict("StatefulSet", name, "done", f"{label}: {strategy.type}, not watched")

    def wait(message: str) -> Verdict:
        return Verdict("StatefulSet", name, "progressing", message)

    generation = _int(s.metadata.generation)
    observed = _int(status.observed_generation if status else None)
    if status is None or observed == 0 or generation > observed:
        return wait(f"{label} generation {generation} not yet observed")
    desired = _int(spec.replicas if spec else None, 1)
    ready = _int(status.ready_replicas)
    updated = _int(status.updated_replicas)
    rolling = strategy.rolling_update if strategy is not None else None
    partition = _int(rolling.partition if rolling is not None else None)
    target = max(0, desired - partition)
    part = f" (partition {partition})" if partition else ""
    counts = f"{label} {updated}/{target} updated{part}, {ready}/{desired} ready"
    if ready < desired:
        return wait(counts)
    if updated < target:
        return wait(counts)
    if not partition and status.update_revision != status.current_revision:
        return wait(f"{counts}, revision {status.current_revision} -> {status.update_revision}")
    return Verdict("StatefulSet", name, "done", f"{label} {updated}/{target}{part}")


def daemonset_verdict(ds: Any) -> Verdict:
    name = ds.metadata.name or ""
    label = f"daemonset {name}"
    status, spec = ds.status, ds.spec
    strategy = spec.update_strategy if spec else None
    if strategy is not None and strategy.type not in (None, "RollingUpdate"):
        return Verdict("DaemonSet", name, "done", f"{label}: {strategy.type}, not watched")

    def wait(message: str) -> Verdict:
        return Verdict("DaemonSet", name, "progressing", message)

    generation = _int(ds.metadata.generation)
    observed = _int(status.observed_generation if status else None)
    if status is None or generation > observed:
        return wait(f"{label} generation {generation} not yet observed")
    desired = _int(status.desired_number_scheduled)
    updated = _int(status.updated_number_scheduled)
    available = _int(status.number_available)
    counts = f"{label} {updated}/{desired} updated, {available}/{desired} available"
    if updated < desired or available < desired:
        return wait(counts)
    return Verdict("DaemonSet", name, "done", f"{label} {available}/{desired}")


def newest_replicasets(replicasets: Iterable[Any], deployments: Sequence[str]) -> dict[str, str]:
    """Deployment name -> the name of its ReplicaSet with the highest revision annotation."""
    best: dict[str, tuple[int, str]] = {}
    for rs in replicasets:
        meta = rs.metadata
        revision = int((meta.annotations or {}).get(_REVISION, "0") or 0)
        for owner in meta.owner_references or []:
            if owner.kind == "Deployment" and owner.name in deployments:
                if owner.name not in best or revision > best[owner.name][0]:
                    best[owner.name] = (revision, meta.name or "")
    return {deployment: name for deployment, (_, name) in best.items()}


def _template_images(workload: Any) -> set[str]:
    template = workload.spec.template if workload.spec else None
    containers = (template.spec.containers if template and template.spec else None) or []
    return {c.image for c in containers}


def new_pods(
    pending: Sequence[tuple[Verdict, Any]], replicasets: Iterable[Any], pods: Iterable[PodState]
) -> list[PodState]:
    """The pods the pending workloads' rollouts created: of a Deployment's newest ReplicaSet
    (every ReplicaSet-owned pod when that is unknown), of a StatefulSet's `updateRevision`,
    of a DaemonSet's current template."""
    deployments = [v.name for v, _ in pending if v.kind == "Deployment"]
    newest = newest_replicasets(replicasets, deployments)
    unknown_rs = any(d not in newest for d in deployments)
    wanted_rs = set(newest.values())
    sets = {v.name: obj for v, obj in pending if v.kind == "StatefulSet"}
    daemons = {v.name: obj for v, obj in pending if v.kind == "DaemonSet"}
    found = []
    for pod in pods:
        if pod.terminating or pod.owner is None:
            continue
        kind, owner = pod.owner
        if kind == "ReplicaSet" and (owner in wanted_rs or unknown_rs):
            found.append(pod)
        elif kind == "StatefulSet" and owner in sets:
            revision = sets[owner].status.update_revision
            if pod.labels.get("controller-revision-hash") == revision:
                found.append(pod)
        elif kind == "DaemonSet" and owner in daemons:
            ds = daemons[owner]
            generation = pod.labels.get("pod-template-generation")
            if generation is not None:
                if generation == str(ds.metadata.generation):
                    found.append(pod)
            elif {c.image for c in pod.containers} <= _template_images(ds):
                found.append(pod)
    return found


HELM_RELEASE_ANNOTATION = "meta.helm.sh/release-name"  # helm >= 3.2 sets it on what it owns


@dataclass(frozen=True)
class Releases:
    """Which workloads a rollout watch judges: those of these Helm releases, named by the
    `label` (`app.kubernetes.io/instance`), else by Helm's release-name annotation. A workload
    that names no release is judged too (it cannot be told apart); one that names another
    release is someone else's and is left out, with its ReplicaSets and pods."""

    names: frozenset[str]
    label: str = INSTANCE_LABEL

    def release_of(self, meta: Any) -> str | None:
        labels = (meta.labels if meta is not None else None) or {}
        annotations = (meta.annotations if meta is not None else None) or {}
        return labels.get(self.label) or annotations.get(HELM_RELEASE_ANNOTATION)

    def foreign(self, meta: Any) -> bool:
        release = self.release_of(meta)
        return release is not None and release not in self.names


def _split(objects: Iterable[Any], releases: Releases) -> tuple[list[Any], set[str]]:
    """(the objects that are not foreign, the names of those that are)."""
    kept, foreign = [], set()
    for obj in objects:
        if releases.foreign(obj.metadata):
            foreign.add(obj.metadata.name or "")
        else:
            kept.append(obj)
    return kept, foreign


def select(
    releases: Releases,
    deployments: Iterable[Any],
    statefulsets: Iterable[Any],
    daemonsets: Iterable[Any],
    replicasets: Iterable[Any],
    pods: Iterable[PodState],
) -> tuple[list[Any], list[Any], list[Any], list[Any], list[PodState]]:
    """The workloads, ReplicaSets and pods of `releases` (see `Releases`)."""
    deps, other_deps = _split(deployments, releases)
    sets, other_sets = _split(statefulsets, releases)
    daemons, other_daemons = _split(daemonsets, releases)
    rss, other_rss = [], set()
    for rs in replicasets:
        owners = {(o.kind, o.name) for o in rs.metadata.owner_references or []}
        if releases.foreign(rs.metadata) or any(("Deployment", n) in owners for n in other_deps):
            other_rss.add(rs.metadata.name or "")
        else:
            rss.append(rs)
    others = {"ReplicaSet": other_rss, "StatefulSet": other_sets, "DaemonSet": other_daemons}
    kept_pods = []
    for pod in pods:
        foreign = pod.labels.get(releases.label) not in (None, *releases.names)
        if foreign or (pod.owner is not None and pod.owner[1] in others.get(pod.owner[0], ())):
            continue
        kept_pods.append(pod)
    return deps, sets, daemons, rss, kept_pods


def judge(
    deployments: Iterable[Any],
    statefulsets: Iterable[Any],
    daemonsets: Iterable[Any],
    replicasets: Iterable[Any],
    pods: Iterable[PodState],
    releases: Releases | None = None,
) -> Judgement:
    """The namespace's rollout (with `releases`: of those releases' workloads only): done
    when every workload is, failed when one is (or a new pod waits for a failing reason),
    else progressing."""
    if releases is not None:
        deployments, statefulsets, daemonsets, replicasets, pods = select(
            releases, deployments, statefulsets, daemonsets, replicasets, pods
        )
    verdicts = [(deployment_verdict(d), d) for d in deployments]
    verdicts += [(statefulset_verdict(s), s) for s in statefulsets]
    verdicts += [(daemonset_verdict(ds), ds) for ds in daemonsets]
    messages = tuple(v.message for v, _ in verdicts)
    failed = [v for v, _ in verdicts if v.state == "failed"]
    if failed:
        return Judgement("failed", failed[0].message, messages)
    pending = [(v, obj) for v, obj in verdicts if v.state != "done"]
    if not pending:
        done = ", ".join(messages)
        return Judgement("done", f"rollout complete: {done or 'no workloads'}", messages)
    problems = problems_of(new_pods(pending, replicasets, pods))
    if problems:
        details = tuple(p.describe() for p in problems)
        return Judgement("failed", details[0], details)
    return Judgement("progressing", ", ".join(v.message for v, _ in pending), messages)
