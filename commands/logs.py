"""`!logs <component> <env>`: a link to a page with the last lines of the component's failing
pods (or all its pods) and the namespace's recent events, secrets redacted
(`bot.cluster.podlogs`)."""

from __future__ import annotations

from bot.cluster.kube import ClusterError, KubeCluster
from bot.cluster.livestate import target_of
from bot.cluster.podlogs import EVENTS, TAIL_LINES, pod_logs
from bot.config.auth import Role
from bot.core.errors import UserError
from commands.parse import Invocation
from commands.spec import Context, command


@command(
    "logs",
    role=Role.deployer,
    usage="<component> <env>",
    summary=f"a page with the last {TAIL_LINES} log lines of the failing pods (or all pods)"
    f" and the {EVENTS} most recent events, secrets redacted",
    examples=[("!logs builds-api toolsbeta", r"logs of builds-api|no cluster")],
)
async def logs(ctx: Context, inv: Invocation) -> str:
    if len(inv.args) != 2:
        raise UserError(f"usage: {ctx.spec.syntax(ctx.prefix)}")
    component, env = ctx.component(inv.args[0]), ctx.env(inv.args[1])
    ctx.require(Role.deployer, component, env)
    cluster = ctx.services.clusters.get(env)
    if not isinstance(cluster, KubeCluster):
        raise UserError(f"no cluster configured for {env} (kubeconfig/kube_context); no logs")
    namespace = target_of(ctx.config, component).namespace
    try:
        report = await pod_logs(cluster, namespace, ctx.services.redactor.outside)
    except ClusterError as exc:
        raise UserError(f"cannot read {namespace} in {env}: {exc}") from None
    diffs = ctx.services.diffs
    if diffs is None:
        raise UserError("no page store configured; no logs")
    link = await diffs.save(
        report.page(f"!logs {component} {env} (namespace {namespace})"), gate=(component, env)
    )
    if report.failing:
        shown = ", ".join(report.failing[:3]) + (" …" if len(report.failing) > 3 else "")
        what = f"{len(report.shown)} failing pod{'s' if len(report.shown) != 1 else ''} ({shown})"
    else:
        what = f"no failing pods; all {len(report.shown)} pods"
    return (
        f"logs of {component} in {env}: {what}, last {TAIL_LINES} lines each, and"
        f" {report.events} recent events: {link}"
    )
