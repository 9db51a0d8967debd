"""The incident follow-up monitors: managed workloads with >= 2 replicas and no
PodDisruptionBudget (`no-pdb`), and certificates expiring within `monitors.cert_warn_days`
(`cert-expiry`), per component and environment with a cluster. A namespace that cannot be
read is not "checked", so an unreachable cluster never clears these alerts.
"""

from __future__ import annotations

import asyncio
from datetime import UTC

from bot.cluster.hygiene import certificates, unprotected_workloads
from bot.cluster.kube import ClusterError, KubeCluster
from bot.cluster.livestate import target_of
from bot.services import Services
from bot.store.alerts import Finding, Scope


async def hygiene_findings(services: Services, now: float) -> tuple[list[Finding], set[Scope]]:
    """The findings, and the (kind, component, env) scopes that were actually read."""
    config = services.config
    findings: list[Finding] = []
    checked: set[Scope] = set()
    warn = config.monitors.cert_warn_days * 86400
    timeout = config.monitors.source_timeout
    for env, cluster in services.clusters.items():
        if not isinstance(cluster, KubeCluster):
            continue  # a live_file stand-in: nothing to inspect
        for component in config.components:
            ns = target_of(config, component).namespace
            try:
                async with asyncio.timeout(timeout):
                    bare = await unprotected_workloads(cluster, ns)
                checked.add(("no-pdb", component, env))
                for w in bare:
                    text = (
                        f"{w.kind} {ns}/{w.name} has {w.replicas} replicas and no"
                        " PodDisruptionBudget: a node drain can stop them all at once"
                    )
                    findings.append(Finding("no-pdb", component, env, w.name, text))
            except (ClusterError, TimeoutError):
                pass
            try:
                async with asyncio.timeout(timeout):
                    certs = await certificates(cluster, ns)
                checked.add(("cert-expiry", component, env))
            except (ClusterError, TimeoutError):
                continue
            for c in certs:
                left = c.not_after.timestamp() - now
                if left <= warn:
                    when = c.not_after.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
                    state = f"expires {when} (in {max(int(left // 86400), 0)} days)"
                    if left <= 0:
                        state = f"expired {when}"
                    text = f"{c.source} {ns}/{c.name} {state}; renew it"
                    findings.append(Finding("cert-expiry", component, env, c.name, text))
    return findings, checked
