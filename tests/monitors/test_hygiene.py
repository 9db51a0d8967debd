"""Incident follow-ups as monitors: a managed workload with >= 2 replicas and no
PodDisruptionBudget, and certificates (cert-manager Certificates, TLS Secrets) expiring within
`cert_warn_days`, raise alerts and clear them when fixed (FakeKube, a real openssl cert)."""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.cluster.hygiene import cert_not_after
from bot.monitors.checks import Monitors
from tests.support.monitorworld import Clock, world

KINDS = ("no-pdb", "cert-expiry")


def self_signed(tmp: Path, days: int) -> bytes:
    key, crt = tmp / f"k{days}.pem", tmp / f"c{days}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(crt), "-days", str(days), "-subj", "/CN=builds-api-webhook"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt.read_bytes()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_certificates_expiry_is_read_from_its_pem(tmp_path: Path) -> None:
    pem = self_signed(tmp_path, 30)
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate"], input=pem, capture_output=True, check=True
    ).stdout.decode()
    expected = datetime.strptime(out.strip().split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    assert cert_not_after(pem) == expected.replace(tzinfo=UTC)
    assert cert_not_after(b"not a certificate") is None


async def test_pdb_and_certificate_alerts_raise_and_clear(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        beta = w.kubes["toolsbeta"]
        now = time.time()
        beta.delete_pdb("builds-api", "builds-api")  # 2 replicas, no budget any more
        beta.add_certificate("jobs-api", "jobs-api-tls", rfc3339(now + 5 * 86400 + 60))
        beta.add_certificate("jobs-api", "jobs-api-ca", rfc3339(now + 90 * 86400))
        beta.add_tls_secret("builds-api", "webhook-tls", self_signed(tmp_path, 3))
        app = await w.app()
        monitors = Monitors(app.services, app.bumper, clock=Clock(now))

        actions = [a for a in await monitors.check_now() if a.alert.kind in KINDS]
        lines = sorted(a.line(now) for a in actions)
        assert [(a.verb, a.alert.kind, a.alert.component, a.alert.env) for a in sorted(
            actions, key=lambda a: (a.alert.kind, a.alert.component))] == [
            ("raise", "cert-expiry", "builds-api", "toolsbeta"),
            ("raise", "cert-expiry", "jobs-api", "toolsbeta"),
            ("raise", "no-pdb", "builds-api", "toolsbeta"),
        ]  # fmt: skip
        assert re.fullmatch(
            r"ALERT cert-expiry builds-api toolsbeta: Secret builds-api/webhook-tls expires"
            r" \d{4}-\d\d-\d\d \d\d:\d\d UTC \(in [23] days\); renew it",
            lines[0],
        ), lines[0]
        assert lines[1] == (
            "ALERT cert-expiry jobs-api toolsbeta: Certificate jobs-api/jobs-api-tls expires"
            f" {datetime.fromtimestamp(now + 5 * 86400 + 60, UTC):%Y-%m-%d %H:%M} UTC (in 5 days);"
            " renew it"
        )
        assert lines[2] == (
            "ALERT no-pdb builds-api toolsbeta: Deployment builds-api/builds-api has 2 replicas"
            " and no PodDisruptionBudget: a node drain can stop them all at once"
        )

        beta.add_pdb("builds-api", "builds-api", {"app.kubernetes.io/name": "builds-api"})
        beta.add_certificate("jobs-api", "jobs-api-tls", rfc3339(now + 90 * 86400))
        beta.add_tls_secret("builds-api", "webhook-tls", self_signed(tmp_path, 60))
        cleared = [a for a in await monitors.check_now() if a.alert.kind in KINDS]
        assert sorted((a.verb, a.alert.kind, a.alert.component) for a in cleared) == [
            ("clear", "cert-expiry", "builds-api"),
            ("clear", "cert-expiry", "jobs-api"),
            ("clear", "no-pdb", "builds-api"),
        ]


async def test_a_hung_cluster_is_asked_once_per_check_not_once_per_namespace(
    tmp_path: Path,
) -> None:
    """A cluster that does not answer within `source_timeout` leaves the rest of it unread in
    that round: the hygiene and certificate-restart checks each wait on one namespace of it,
    not on every one in turn, and what was not read keeps its alerts (nothing cleared)."""

    def quick(data: dict[str, Any]) -> None:
        data["monitors"]["source_timeout"] = 0.5

    async with world(tmp_path, quick) as w:
        now = time.time()
        app = await w.app()
        monitors = Monitors(app.services, app.bumper, clock=Clock(now))
        await monitors.check_now()
        prod = w.kubes["tools"]
        prod.fault = "hang"
        before = len(prod.requests)
        await monitors.check_now()
        asked = [r.split("?")[0] for r in prod.requests[before:]]
        per_namespace = [r for r in asked if "/namespaces/" in r]
        namespaces = {r.split("/namespaces/")[1].split("/")[0] for r in per_namespace}
        assert len(namespaces) == 1, asked  # the first namespace only: then the round moves on
