"""`!logs <component> <env>`: the last lines of a component's failing pods (all its pods when
none fails) and the namespace's recent Kubernetes events, as one text page.

Logs can carry credentials, so every line goes through the bot's redactor for outside text
(known secret values and every secret shape, `bot.core.shapes`) before it is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bot.cluster.kube import ClusterError, KubeCluster, problems_of

TAIL_LINES = 50
EVENTS = 20


@dataclass
class LogsReport:
    namespace: str
    failing: list[str] = field(default_factory=list)  # `pod: reason`
    shown: list[str] = field(default_factory=list)  # pod names whose logs are on the page
    sections: list[str] = field(default_factory=list)
    events: int = 0

    def page(self, title: str) -> str:
        return "\n\n".join([title, *self.sections]) + "\n"


def _when(ev: Any) -> datetime:
    stamp = ev.last_timestamp or ev.event_time or ev.first_timestamp
    if stamp is None and ev.metadata is not None:
        stamp = ev.metadata.creation_timestamp
    return stamp or datetime.fromtimestamp(0, UTC)


async def pod_logs(
    cluster: KubeCluster, namespace: str, redact: Callable[[str], str]
) -> LogsReport:
    """Collect the page's sections (redacted); ClusterError when the namespace is unreadable."""
    report = LogsReport(namespace)
    pods = await cluster.pods(namespace)
    problems = problems_of(pods, restart_threshold=0)
    report.failing = [f"{p.pod} {p.reason}" for p in problems]
    failing = {p.pod for p in problems}
    chosen = [p for p in pods if p.name in failing] or pods
    from kubernetes.aio import client as k8s  # on first use: see bot.cluster.kube

    core = k8s.CoreV1Api(await cluster.api())
    for pod in chosen:
        report.shown.append(pod.name)
        for c in pod.containers:
            head = f"== pod {pod.name} container {c.name} ({c.waiting_reason or pod.phase},"
            head += f" {c.restart_count} restarts): last {TAIL_LINES} lines"
            try:
                text = await cluster.call(
                    f"read the log of {pod.name}", core.read_namespaced_pod_log, pod.name,
                    namespace, container=c.name, tail_lines=TAIL_LINES,
                )  # fmt: skip
            except ClusterError as exc:
                text = f"(no log: {exc})"
            report.sections.append(head + "\n" + redact(str(text).rstrip("\n")))
    events = await cluster.call(
        f"list events in {namespace}", core.list_namespaced_event, namespace
    )
    recent = sorted(events.items, key=_when, reverse=True)[:EVENTS]
    report.events = len(recent)
    lines = [
        f"{_when(e):%Y-%m-%d %H:%M:%S} {e.type} {e.reason}"
        f" {e.involved_object.kind}/{e.involved_object.name}: {' '.join((e.message or '').split())}"
        for e in recent
    ]
    report.sections.append(
        f"== the {len(recent)} most recent events in {namespace}\n"
        + redact("\n".join(lines) or "(none)")
    )
    return report
