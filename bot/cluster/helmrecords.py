"""Helm's release records, read from the Secrets Helm 3 stores them in.

Every revision of a release is a Secret `sh.helm.release.v1.<release>.v<N>` (labels
`owner=helm,name=<release>`) whose `data.release` is base64 (Secret) of base64 (Helm) of
gzip'd JSON. From the records: the newest *deployed* revision (what runs, when no Deployment
carries a chart label) and the release's state: the newest record's status, which Helm leaves
at `failed` after a failed upgrade and at `pending-install`/`pending-upgrade`/
`pending-rollback` when an operation was cut off; such a release blocks normal deploys.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SECRET_TYPE = "helm.sh/release.v1"
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
TROUBLE = ("failed", *PENDING)


def selector(release: str) -> str:
    """The label selector of `release`'s record Secrets."""
    return f"owner=helm,name={release}"


@dataclass(frozen=True)
class HelmRelease:
    name: str
    revision: int
    chart: str
    chart_version: str
    app_version: str
    status: str
    description: str = ""  # what Helm wrote ("Upgrade complete", "Rollback to 3")
    deployed_at: str = ""  # `info.last_deployed` (RFC 3339), "" when absent


@dataclass(frozen=True)
class ReleaseState:
    """A release's newest record and its newest deployed one (None: never deployed)."""

    namespace: str
    latest: HelmRelease
    deployed: HelmRelease | None

    @property
    def status(self) -> str:
        return self.latest.status

    @property
    def in_trouble(self) -> bool:
        """The newest record is failed or pending: the next normal deploy would not apply."""
        return self.latest.status in TROUBLE

    def describe(self) -> str:
        """`helm release builds-api failed at revision 5 (0.0.132); last deployed: revision 4
        (0.0.131)`."""
        latest, deployed = self.latest, self.deployed
        text = (
            f"helm release {latest.name} {latest.status} at revision {latest.revision}"
            f" ({latest.chart_version})"
        )
        if deployed is None:
            return text + "; never deployed"
        return text + f"; last deployed: revision {deployed.revision} ({deployed.chart_version})"

    def next_step(self, component: str, env: str) -> str:
        """What clears it: a rollback to the last deployed revision (`!rollback --emergency`
        runs `helm rollback`, which also ends a stuck pending operation), or, when nothing
        was ever deployed, uninstalling the broken release."""
        name, namespace = self.latest.name, self.namespace
        if self.deployed is None:
            return f"helm uninstall {name} -n {namespace}, then !apply {component} {env}"
        rollback = f"!rollback {component} {env} --emergency"
        if self.latest.status in PENDING:
            helm = f"helm rollback {name} {self.deployed.revision} -n {namespace}"
            return f"{rollback} (or {helm})"
        return rollback


def decode_helm_release(data: str) -> dict[str, Any]:
    """Decode a Secret's `data.release` into Helm's release JSON."""
    raw = base64.b64decode(base64.b64decode(data))
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    decoded: dict[str, Any] = json.loads(raw)
    return decoded


def release_records(secrets: Iterable[Any], release: str) -> list[HelmRelease]:
    """The readable records of `release` among Secrets (client models), oldest first.
    Anything that is not a Helm record of that release is skipped, never fatal."""
    found = []
    for secret in secrets:
        data = (secret.data or {}).get("release")
        if secret.type not in (None, SECRET_TYPE) or not isinstance(data, str):
            continue
        try:
            record = decode_helm_release(data)
        except (ValueError, OSError, EOFError, binascii.Error):
            continue
        if not isinstance(record, dict) or record.get("name") != release:
            continue
        meta = (record.get("chart") or {}).get("metadata") or {}
        info = record.get("info") or {}
        try:
            revision = int(record.get("version", 0))
        except (TypeError, ValueError):
            continue
        found.append(
            HelmRelease(
                name=release,
                revision=revision,
                chart=str(meta.get("name", "")),
                chart_version=str(meta.get("version", "")),
                app_version=str(meta.get("appVersion", "") or ""),
                status=str(info.get("status", "")),
                description=str(info.get("description", "") or ""),
                deployed_at=str(info.get("last_deployed", "") or ""),
            )
        )
    return sorted(found, key=lambda r: r.revision)


def last_deployed(records: list[HelmRelease]) -> HelmRelease | None:
    """The newest record with status `deployed`."""
    return next((r for r in reversed(records) if r.status == "deployed"), None)


def release_state(namespace: str, records: list[HelmRelease]) -> ReleaseState | None:
    if not records:
        return None
    return ReleaseState(namespace, records[-1], last_deployed(records))
