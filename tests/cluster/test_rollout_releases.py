"""Two components in one namespace: the rollout verdict of one never depends on the other's
workloads (`judge` with `Releases`, a property over the other's states; through the API:
tests/cluster/test_kube.py)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from kubernetes.aio.client import models as m

from bot.cluster.rollout import Releases, judge
from bot.cluster.workloads import ContainerState, PodState

OURS = Releases(frozenset({"builds-api"}))

# --- pure: the client's model objects --------------------------------------------------------


def deployment(name: str, labels: dict[str, str], annotations: dict[str, str], state: str) -> Any:
    """A Deployment in `state`: done, progressing (new pods not ready) or deadline."""
    done = state == "done"
    conditions = None
    if state == "deadline":
        conditions = [m.V1DeploymentCondition(type="Progressing", status="False",
                                              reason="ProgressDeadlineExceeded")]  # fmt: skip
    return m.V1Deployment(
        metadata=m.V1ObjectMeta(name=name, generation=2, labels=labels, annotations=annotations),
        spec=m.V1DeploymentSpec(
            replicas=2, selector=m.V1LabelSelector(), template=m.V1PodTemplateSpec()
        ),
        status=m.V1DeploymentStatus(
            observed_generation=2,
            updated_replicas=2 if done else 0,
            available_replicas=2 if done else 0,
            replicas=2,
            conditions=conditions,
        ),  # fmt: skip
    )


def replicaset(deployment_name: str, labels: dict[str, str]) -> Any:
    owner = m.V1OwnerReference(api_version="apps/v1", kind="Deployment", name=deployment_name,
                               uid="u", controller=True)  # fmt: skip
    return m.V1ReplicaSet(
        metadata=m.V1ObjectMeta(
            name=f"{deployment_name}-2", labels=labels, owner_references=[owner],
            annotations={"deployment.kubernetes.io/revision": "2"},
        ),
        spec=m.V1ReplicaSetSpec(selector=m.V1LabelSelector()),
    )  # fmt: skip


def pod(deployment_name: str, labels: dict[str, str], reason: str | None) -> PodState:
    container = ContainerState("main", "img", reason is None, 0, reason)
    return PodState(f"{deployment_name}-2-0", "Running" if reason is None else "Pending",
                    f"{deployment_name}-2", None, (container,),
                    owner=("ReplicaSet", f"{deployment_name}-2"), labels=labels)  # fmt: skip


INSTANCE = "app.kubernetes.io/instance"
HELM_ANNOTATION = "meta.helm.sh/release-name"


@st.composite
def other_release(draw: st.DrawFn) -> tuple[Any, Any, PodState]:
    """Another release's Deployment in the same namespace, named by the instance label, by
    Helm's annotation only, or by both; in any state, its new pods maybe failing."""
    name = draw(st.sampled_from(["jobs-api", "builds-api-old", "cert-manager"]))
    how = draw(st.sampled_from(["label", "annotation", "both"]))
    labels = {INSTANCE: name} if how != "annotation" else {}
    annotations = {HELM_ANNOTATION: name} if how != "label" else {}
    state = draw(st.sampled_from(["done", "progressing", "deadline"]))
    reason = draw(st.sampled_from([None, "ImagePullBackOff", "CrashLoopBackOff"]))
    pod_labels = labels if draw(st.booleans()) else {}  # charts may not label their pods
    return (deployment(name, labels, annotations, state), replicaset(name, pod_labels),
            pod(name, pod_labels, None if state == "done" else reason))  # fmt: skip


@given(
    ours=st.sampled_from(["done", "progressing"]),
    others=st.lists(other_release(), max_size=3, unique_by=lambda o: o[0].metadata.name),
)
def test_other_releases_never_change_the_verdict(
    ours: str, others: list[tuple[Any, Any, PodState]]
) -> None:
    mine = deployment("builds-api", {INSTANCE: "builds-api"}, {}, ours)
    my_rs = replicaset("builds-api", {})
    my_pod = pod("builds-api", {}, None if ours == "done" else "ContainerCreating")
    alone = judge([mine], [], [], [my_rs], [my_pod], OURS)

    together = judge(
        [mine, *(o[0] for o in others)], [], [],
        [my_rs, *(o[1] for o in others)], [my_pod, *(o[2] for o in others)], OURS,
    )  # fmt: skip

    assert together == alone
    assert alone.state == ("done" if ours == "done" else "progressing")


def test_without_releases_the_namespace_is_judged_whole() -> None:
    """What the filter prevents: a failing neighbour fails everyone's rollout."""
    mine = deployment("builds-api", {INSTANCE: "builds-api"}, {}, "done")
    theirs = deployment("jobs-api", {INSTANCE: "jobs-api"}, {}, "progressing")
    pods = [pod("jobs-api", {}, "ImagePullBackOff")]
    rss = [replicaset("jobs-api", {})]

    assert judge([mine, theirs], [], [], rss, pods).state == "failed"
    assert judge([mine, theirs], [], [], rss, pods, OURS).state == "done"
    judged = judge([mine, theirs], [], [], rss, pods, Releases(frozenset({"jobs-api"})))
    assert (judged.state, judged.summary) == ("failed", "pod jobs-api-2-0: ImagePullBackOff")


def test_a_workload_that_names_no_release_is_still_watched() -> None:
    """A chart without the standard labels cannot be told apart: it counts, as before."""
    mine = deployment("builds-api", {INSTANCE: "builds-api"}, {}, "done")
    unnamed = deployment("sidecar", {}, {}, "progressing")
    judged = judge([mine, unnamed], [], [], [], [], OURS)
    assert judged.state == "progressing" and "sidecar" in judged.summary


def test_a_configured_label_names_the_release() -> None:
    by_release = Releases(frozenset({"builds-api"}), label="release")
    mine = deployment("builds-api", {"release": "builds-api"}, {}, "done")
    theirs = deployment("jobs-api", {"release": "jobs-api"}, {}, "deadline")
    assert judge([mine, theirs], [], [], [], [], by_release).state == "done"
    assert judge([mine, theirs], [], [], [], [], OURS).state == "failed"  # other label
