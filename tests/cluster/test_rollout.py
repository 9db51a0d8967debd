"""kubectl's rollout rules as pure functions over the client's model objects: no server."""

from __future__ import annotations

from typing import Any

from kubernetes.aio.client import models as m

from bot.cluster.rollout import daemonset_verdict, deployment_verdict, judge, statefulset_verdict
from bot.cluster.workloads import ContainerState, PodState


def deployment(
    *, generation: int = 2, observed: int = 2, desired: int = 2, updated: int = 2,
    available: int = 2, total: int = 2, conditions: list[Any] | None = None,
) -> Any:  # fmt: skip
    return m.V1Deployment(
        metadata=m.V1ObjectMeta(name="api", generation=generation),
        spec=m.V1DeploymentSpec(
            replicas=desired, selector=m.V1LabelSelector(), template=m.V1PodTemplateSpec()
        ),
        status=m.V1DeploymentStatus(
            observed_generation=observed,
            updated_replicas=updated,
            available_replicas=available,
            replicas=total,
            conditions=conditions,
        ),  # fmt: skip
    )


def test_deployment_waits_for_the_controller_then_for_every_kind_of_replica() -> None:
    assert deployment_verdict(deployment(observed=1)).message == (
        "api generation 2 not yet observed"
    )
    assert deployment_verdict(deployment(updated=1)).state == "progressing"
    terminating = deployment_verdict(deployment(total=3))
    assert (terminating.state, terminating.message) == (
        "progressing",
        "api 2/2 updated, 2/2 available, 1 old replica still terminating",
    )
    assert deployment_verdict(deployment(available=1)).message == ("api 2/2 updated, 1/2 available")
    done = deployment_verdict(deployment())
    assert (done.state, done.message) == ("done", "api 2/2")


def test_progress_deadline_counts_only_once_the_generation_is_observed() -> None:
    stuck = m.V1DeploymentCondition(
        type="Progressing", status="False", reason="ProgressDeadlineExceeded",
        message='ReplicaSet "api-1" has timed out progressing.',
    )  # fmt: skip
    failed = deployment_verdict(deployment(updated=0, conditions=[stuck]))
    assert (failed.state, failed.message) == (
        "failed",
        'api: ProgressDeadlineExceeded: ReplicaSet "api-1" has timed out progressing.',
    )
    assert deployment_verdict(deployment(observed=1, conditions=[stuck])).state == "progressing"


def statefulset(strategy: str = "RollingUpdate", **status: Any) -> Any:
    fields = dict(observed_generation=1, replicas=2, ready_replicas=2, updated_replicas=2,
                  current_revision="a", update_revision="a")  # fmt: skip
    fields.update(status)
    rolling = m.V1RollingUpdateStatefulSetStrategy(partition=0)
    return m.V1StatefulSet(
        metadata=m.V1ObjectMeta(name="db", generation=1),
        spec=m.V1StatefulSetSpec(
            replicas=2,
            selector=m.V1LabelSelector(),
            service_name="db",
            template=m.V1PodTemplateSpec(),
            update_strategy=m.V1StatefulSetUpdateStrategy(
                type=strategy, rolling_update=rolling if strategy == "RollingUpdate" else None
            ),
        ),  # fmt: skip
        status=m.V1StatefulSetStatus(**fields),
    )


def test_statefulset_needs_ready_pods_and_the_new_revision_everywhere() -> None:
    assert statefulset_verdict(statefulset(ready_replicas=1)).state == "progressing"
    moving = statefulset_verdict(statefulset(update_revision="b"))
    assert moving.message == "statefulset db 2/2 updated, 2/2 ready, revision a -> b"
    assert statefulset_verdict(statefulset()).state == "done"
    on_delete = statefulset_verdict(statefulset("OnDelete", update_revision="b"))
    assert (on_delete.state, on_delete.message) == ("done", "statefulset db: OnDelete, not watched")


def test_daemonset_pods_of_an_older_template_generation_never_fail_it() -> None:
    ds = m.V1DaemonSet(
        metadata=m.V1ObjectMeta(name="agent", generation=3),
        spec=m.V1DaemonSetSpec(selector=m.V1LabelSelector(), template=m.V1PodTemplateSpec()),
        status=m.V1DaemonSetStatus(
            observed_generation=3,
            desired_number_scheduled=2,
            current_number_scheduled=2,
            number_misscheduled=0,
            number_ready=1,
            updated_number_scheduled=1,
            number_available=1,
        ),  # fmt: skip
    )
    assert daemonset_verdict(ds).message == "daemonset agent 1/2 updated, 1/2 available"

    def pod(name: str, generation: str) -> PodState:
        crash = ContainerState("c", "img", False, 3, "CrashLoopBackOff")
        return PodState(name, "Running", None, None, (crash,), ("DaemonSet", "agent"),
                        {"pod-template-generation": generation})  # fmt: skip

    old_only = judge([], [], [ds], [], [pod("agent-old", "2")])
    assert old_only.state == "progressing"
    new = judge([], [], [ds], [], [pod("agent-old", "2"), pod("agent-new", "3")])
    assert (new.state, new.summary) == ("failed", "pod agent-new: CrashLoopBackOff")


def test_an_empty_namespace_is_done() -> None:
    assert judge([], [], [], [], []).summary == "rollout complete: no workloads"
