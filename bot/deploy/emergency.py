"""Which Helm revision an emergency rollback returns to, read from the cluster alone.

`helm rollback <release> 0` returns to the revision before the current one; after an earlier
rollback that revision is the *newer* release, so "rolling back" moved production forward.
Here the choice is made from Helm's own release records (`bot.cluster.kube.KubeCluster.helm_history`):
the newest earlier revision whose chart version is older than what runs now, or, with
`to <ref>`, the newest revision whose version matches the ref (which may be newer: the user
said so). No store, forge or registry is consulted, so this works on a bot with no history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.cluster.kube import ClusterError, HelmRelease
from bot.cluster.livestate import target_of
from bot.core.versions import parse_version
from bot.deploy.model import DeployRequest, Refusal
from bot.services import Services

STUCK = ("failed", "pending-install", "pending-upgrade", "pending-rollback")


class NoTarget(ValueError):
    """No revision to return to; the message is one line for chat."""


@dataclass(frozen=True)
class EmergencyTarget:
    current: HelmRelease
    target: HelmRelease

    @property
    def forward(self) -> bool:
        return is_older(self.current.chart_version, self.target.chart_version)


def is_older(a: str, b: str) -> bool:
    """True when version a is older than version b (unparsable versions never compare)."""
    va, vb = parse_version(a), parse_version(b)
    return va is not None and vb is not None and va.sort_key < vb.sort_key


def _matches(version: str, ref: str) -> bool:
    ref = ref.lower()
    if version == ref:
        return True
    parsed = parse_version(version)
    return len(ref) >= 7 and parsed is not None and (parsed.sha8 or "").startswith(ref[:8])


def choose(history: Sequence[HelmRelease], release: str, ref: str | None = None) -> EmergencyTarget:
    """The revision to roll back to (raises NoTarget with the reason)."""
    if not history:
        raise NoTarget(f"Helm keeps no release records for {release} in the cluster")
    deployed = [r for r in history if r.status == "deployed"]
    current = deployed[-1] if deployed else history[-1]
    earlier = [r for r in history if r.revision != current.revision and r.revision > 0]
    if ref is not None:
        wanted = [r for r in earlier if _matches(r.chart_version, ref)]
        if not wanted:
            kept = ", ".join(f"r{r.revision} {r.chart_version}" for r in earlier[-4:])
            raise NoTarget(
                f"no earlier Helm revision of {release} runs {ref} (kept: {kept or 'none'})"
            )
        return EmergencyTarget(current, wanted[-1])
    newest = history[-1]
    if deployed and newest.revision > current.revision and newest.status in STUCK:
        # a failed or cut-off upgrade: going back to what last deployed clears it
        return EmergencyTarget(newest, current)
    older = [
        r
        for r in earlier
        if r.revision < current.revision
        and r.status in ("superseded", "deployed")
        and is_older(r.chart_version, current.chart_version)
    ]
    if not older:
        raise NoTarget(
            f"no earlier Helm revision of {release} runs an older version than "
            f"{current.chart_version} (revision {current.revision}); say which one with to <ref>"
        )
    return EmergencyTarget(current, older[-1])


@dataclass(frozen=True)
class Pick:
    """What an emergency rollback returns to. `version` "" means helm picks the revision
    (`unchecked` says why the bot could not: then no image can be checked either)."""

    version: str
    source: str
    from_version: str | None = None
    revisions: tuple[int | None, int | None] = (None, None)
    unchecked: str | None = None


async def emergency_target(services: Services, req: DeployRequest) -> Pick:
    """The revision to return to, from the cluster's Helm history alone. Without a cluster,
    or when its Helm history cannot be read (RBAC, the API down), helm picks the revision
    (`helm rollback <release> 0`) and the image it returns to cannot be checked: `unchecked`
    says so, for the first line. `to <ref>` needs the history: refused without it."""
    cluster = services.clusters.get(req.env)
    target = target_of(services.config, req.component)
    if cluster is None:
        if req.ref is not None:
            raise Refusal(
                f"--emergency to {req.ref} needs the Helm history, and {req.env} has no "
                f"cluster configured; use !rollback {req.component} {req.env} to {req.ref}"
            )
        why = "no cluster configured to read its history"
        return Pick("", f"helm rollback ({why})", unchecked=why)
    try:
        history = await cluster.helm_history(target.namespace, target.release)
    except ClusterError as exc:
        if req.ref is not None:
            raise Refusal(f"cannot read the Helm history: {exc}; nothing run") from None
        why = f"cannot read the Helm history: {exc}"
        return Pick("", f"helm rollback ({why})", unchecked=why)
    try:
        chosen = choose(history, target.release, req.ref)
    except NoTarget as exc:
        raise Refusal(f"{exc}; nothing run") from None
    now, back = chosen.current, chosen.target
    source = f"helm rollback to revision {back.revision}" + (
        " (forward, as asked with to)" if chosen.forward else ""
    )
    return Pick(back.chart_version, source, now.chart_version, (back.revision, now.revision))
