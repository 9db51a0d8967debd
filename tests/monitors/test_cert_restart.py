"""The incident's trigger: cert-manager renewed a TLS Secret, the pods that mount it started
before that and still serve the old certificate; they will restart to pick it up, and the
restart pulls their image again. A `cert-restart` alert names the pods, the new certificate's
notAfter and whether the registry (a REAL `docker-registry` on loopback) still has the image;
an image a retention rule pruned is named by that alert alone."""

from __future__ import annotations

import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.cluster.hygiene import cert_not_after
from bot.monitors.checks import Monitors
from tests.support.fakes.kube import FakeKube, pod_json
from tests.support.monitorworld import Clock, on_real_registry, push_releases, world
from tests.support.oci_registry import OciRegistry

NS = "builds-api"


def self_signed(tmp: Path, days: int) -> bytes:
    key, crt = tmp / f"k{days}.pem", tmp / f"c{days}.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(crt), "-days", str(days), "-subj", "/CN=builds-api"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return crt.read_bytes()


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serving_pod(kube: FakeKube, name: str, image: str, started: float, secret: str) -> None:
    """A running pod of builds-api that mounts `secret`, started at `started`."""
    pod: dict[str, Any] = pod_json(NS, name, None, image)
    pod["spec"]["volumes"] = [{"name": "tls", "secret": {"secretName": secret}}]
    pod["status"]["startTime"] = rfc3339(started)
    kube.add_pod(NS, pod)


async def test_a_renewal_with_a_pruned_image_is_one_alert_naming_it(
    tmp_path: Path, oci_registry: OciRegistry
) -> None:
    async with world(tmp_path, on_real_registry(oci_registry)) as w:
        push_releases(w, oci_registry)
        tools = w.kubes["tools"]
        running = w.pins[("builds-api", "tools")]
        image = f"{oci_registry.address}/toolforge/builds-api:{running}"
        now = time.time()
        pem = self_signed(tmp_path, 90)
        renewed = now - 600  # cert-manager wrote the new certificate 10 minutes ago
        tools.add_tls_secret(NS, "builds-api-tls", pem, changed_at=rfc3339(renewed))
        serving_pod(tools, "builds-api-7d9f-a", image, now - 86400, "builds-api-tls")
        serving_pod(tools, "builds-api-7d9f-b", image, now - 3600, "builds-api-tls")
        serving_pod(tools, "builds-api-7d9f-c", image, now - 60, "builds-api-tls")  # new one
        serving_pod(tools, "other-1", image, now - 86400, "some-other-secret")
        app = await w.app()
        clock = Clock(now)
        monitors = Monitors(app.services, app.bumper, clock=clock)

        first = await monitors.check_now()
        assert [(a.verb, a.alert.kind, a.alert.env, a.alert.detail) for a in first] == [
            ("raise", "cert-restart", "tools", "builds-api-tls")
        ]
        not_after = cert_not_after(pem)
        assert not_after is not None
        assert first[0].line(now) == (
            f"ALERT cert-restart builds-api tools: Secret builds-api/builds-api-tls changed"
            f" {datetime.fromtimestamp(renewed, UTC):%Y-%m-%d %H:%M} UTC (notAfter"
            f" {not_after:%Y-%m-%d %H:%M} UTC), after pods builds-api-7d9f-a, builds-api-7d9f-b"
            f" started: they still serve the old certificate and will restart to pick up the"
            f" new one; a restart will pull {image}: present"
        )

        # a retention rule prunes the image those pods run: the restart cannot pull it
        oci_registry.delete_tag("toolforge/builds-api", running)
        clock.now = now + 60
        await monitors.check_now()
        raised = await monitors.alerts.active()
        naming = [a for a in raised if f"builds-api:{running}" in a.text]
        assert [(a.kind, a.env) for a in naming] == [("cert-restart", "tools")]
        assert naming[0].text.endswith(f"a restart will pull {image}: MISSING in the registry")
        lines = await w.outbox(app)
        assert sum(f"builds-api:{running}" in line for line in lines) == 1  # said once

        # the pods restarted (after the renewal): nothing left to restart, the alert clears
        for pod in ("builds-api-7d9f-a", "builds-api-7d9f-b"):
            serving_pod(tools, pod, image, now + 100, "builds-api-tls")
        oci_registry.push_manifest("toolforge/builds-api", running)
        clock.now = now + 120
        cleared = await monitors.check_now()
        assert [(a.verb, a.alert.kind) for a in cleared] == [("clear", "cert-restart")]
