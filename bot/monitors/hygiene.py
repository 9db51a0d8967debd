"""The incident follow-up monitors: managed workloads with >= 2 replicas and no
PodDisruptionBudget (`no-pdb`), certificates expiring within `monitors.cert_warn_days`
(`cert-expiry`), and pods that still serve a TLS certificate renewed since they started
(`cert-restart`, with what their restart will pull and whether the registry still has it),
per component and environment with a cluster. A namespace that cannot be read is not
"checked", so an unreachable cluster never clears these alerts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.cluster.hygiene import StaleMount, certificates, stale_tls_mounts, unprotected_workloads
from bot.cluster.kube import ClusterError, KubeCluster
from bot.cluster.livestate import target_of
from bot.cluster.registry import RegistryError
from bot.monitors.digests import parse_image
from bot.services import Services
from bot.status.board import ComponentStatus
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
            except TimeoutError:
                break  # the cluster does not answer: the rest of it stays unknown this round
            except ClusterError:
                pass
            try:
                async with asyncio.timeout(timeout):
                    certs = await certificates(cluster, ns)
                checked.add(("cert-expiry", component, env))
            except TimeoutError:
                break
            except ClusterError:
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


def _utc(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass
class CertRestarts:
    """`cert-restart` findings, the scopes read, and the images they found MISSING per
    (component, env) as (repository path, tag): the missing-artifact monitor leaves those
    to this alert, so the image is named by one alert."""

    findings: list[Finding] = field(default_factory=list)
    checked: set[Scope] = field(default_factory=set)
    missing: dict[tuple[str, str], set[tuple[str, str]]] = field(default_factory=dict)


async def _pull_check(services: Services, image: str) -> tuple[str, bool | None]:
    """`<image>: present` / `MISSING in the registry` / `not checked (...)`, and whether it
    is there (None: unknown). Only the bot's registry is asked: an image of another
    registry (a sidecar from docker.io) is not named."""
    registry = services.registry
    if registry is None:
        return f"{image}: not checked (no registry configured)", None
    ref = parse_image(image)
    if ref.tag is None:
        return f"{image}: not checked (pinned by digest)", None
    try:
        async with asyncio.timeout(services.config.monitors.source_timeout):
            there = await registry.manifest_exists(ref.repository, ref.tag)
    except (RegistryError, TimeoutError) as exc:
        why = str(exc) if isinstance(exc, RegistryError) else "timed out"
        return f"{image}: not checked ({why})", None
    return f"{image}: {'present' if there else 'MISSING in the registry'}", there


def _ours(services: Services, component: str, image: str) -> bool:
    """The component's own image (the one the bot deploys and the registry holds)."""
    registry, comp = services.registry, services.config.components[component]
    if registry is None or not comp.image:
        return True  # say "not checked" rather than nothing
    return parse_image(image).repository == registry.repository_path(comp.image)


async def _restart_finding(
    services: Services, component: str, env: str, ns: str, stale: StaleMount,
    status: ComponentStatus | None, out: CertRestarts,
) -> None:  # fmt: skip
    pods = ", ".join(stale.pods[:3]) + (
        f" (+{len(stale.pods) - 3} more)" if len(stale.pods) > 3 else ""
    )
    not_after = f"notAfter {_utc(stale.not_after)}" if stale.not_after else "notAfter unreadable"
    text = (
        f"Secret {ns}/{stale.secret} changed {_utc(stale.changed_at)} ({not_after}), after"
        f" pod{'s' if len(stale.pods) > 1 else ''} {pods} started: they still serve the old"
        " certificate and will restart to pick up the new one"
    )
    pulls = []
    for image in (i for i in stale.images if _ours(services, component, i)):
        said, there = await _pull_check(services, image)
        pulls.append(said)
        if there is False:
            ref = parse_image(image)
            out.missing.setdefault((component, env), set()).add((ref.repository, ref.tag or ""))
    if pulls:
        text += "; a restart will pull " + "; ".join(pulls)
    cell = status.cells.get(env) if status is not None else None
    if cell is not None and cell.advice is not None and cell.advice.command is not None:
        text += f"; {cell.advice.line()}"
    out.findings.append(Finding("cert-restart", component, env, stale.secret, text))


async def cert_restart_findings(
    services: Services, statuses: Iterable[ComponentStatus] = ()
) -> CertRestarts:
    """Per component and environment with a cluster: TLS Secrets changed after pods that
    mount them started (`bot.cluster.hygiene.stale_tls_mounts`), with what a restart will
    pull and whether the registry has it; the planner's step for the cell, if any, ends it."""
    config = services.config
    by_name = {s.component: s for s in statuses}
    out = CertRestarts()
    for env, cluster in services.clusters.items():
        if not isinstance(cluster, KubeCluster):
            continue
        for component in config.components:
            ns = target_of(config, component).namespace
            try:
                async with asyncio.timeout(config.monitors.source_timeout):
                    stale = await stale_tls_mounts(cluster, ns)
            except TimeoutError:
                break  # the cluster does not answer: the rest of it stays unknown this round
            except ClusterError:
                continue
            out.checked.add(("cert-restart", component, env))
            for mount in stale:
                await _restart_finding(
                    services, component, env, ns, mount, by_name.get(component), out
                )
    return out
