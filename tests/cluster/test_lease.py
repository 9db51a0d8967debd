"""The `kubernetes` leader-election backend: a coordination.k8s.io/v1 Lease through
`kubernetes.aio`, against the Kubernetes fake (optimistic concurrency: stale writes get 409)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from bot.cluster.lease import KubeLease
from bot.config.model import LeaderElectionConfig
from tests.support.fakes.kube import FakeKube

LEASE = 2.0


async def test_one_holder_at_a_time_and_a_takeover_after_expiry_raises_the_epoch(
    tmp_path: Path,
) -> None:
    async with FakeKube() as kube:
        settings = LeaderElectionConfig(
            backend="kubernetes", lease_seconds=LEASE, namespace="deploybot",
            kubeconfig=str(kube.kubeconfig(tmp_path / "kubeconfig")),
        )  # fmt: skip
        a, b = KubeLease(settings), KubeLease(settings)
        first = await a.acquire_or_renew("pod-a", LEASE)
        assert first.held and first.epoch == 1
        other = await b.acquire_or_renew("pod-b", LEASE)
        assert not other.held and other.holder == "pod-a"
        renewed = await a.acquire_or_renew("pod-a", LEASE)
        assert renewed.held and renewed.epoch == 1  # renewing keeps the epoch

        deadline = time.monotonic() + LEASE + 10  # pod-a stops renewing (it died)
        taken = other
        while not taken.held and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # polling the Lease, as a standby does
            taken = await b.acquire_or_renew("pod-b", LEASE)
        assert taken.held and taken.epoch == 2
        assert not (await a.acquire_or_renew("pod-a", LEASE)).held

        await b.release("pod-b")  # a graceful stop: the next one need not wait for expiry
        handed = await a.acquire_or_renew("pod-a", LEASE)
        assert handed.held and handed.epoch == 3
        await a.close()
        await b.close()
