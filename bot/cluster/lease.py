"""Leader election through a Kubernetes `coordination.k8s.io/v1` Lease (`kubernetes.aio`).

The library's `LeaderElection.try_acquire_or_renew` decides each round (create, renew, or
take over an expired Lease, with the API server's optimistic concurrency refusing a stale
write); `bot.store.leader.Elector` times the rounds and fences. Each change of holder counts
up `spec.leaseTransitions`, which is the leadership epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kubernetes.aio import client, config
from kubernetes.aio.leaderelection import electionconfig
from kubernetes.aio.leaderelection.leaderelection import LeaderElection
from kubernetes.aio.leaderelection.resourcelock.leaselock import LeaseLock

from bot.config.model import LeaderElectionConfig
from bot.store.leader import Grant

log = logging.getLogger("deploybot.leader")
POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class _CountingLeaseLock(LeaseLock):
    """A LeaseLock that counts holder changes in `spec.leaseTransitions` (the epoch).

    `create` is the library's without `pretty=True`, which this client version's
    `create_namespaced_lease` refuses (it wants a string)."""

    async def create(self, name: str, namespace: str, election_record: Any) -> bool:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=name), spec=self.update_lease(election_record)
        )
        try:
            self.lease_reference = await self.api_instance.create_namespaced_lease(namespace, body)
        except client.ApiException:
            log.warning("Lease %s/%s: create refused (another replica was first?)", namespace, name)
            return False
        return True

    def update_lease(self, leader_election_record: Any, current_spec: Any = None) -> Any:
        previous = current_spec.holder_identity if current_spec is not None else None
        spec = super().update_lease(leader_election_record, current_spec)
        if previous != leader_election_record.holder_identity:
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
        return spec


async def _idle() -> None:
    return None


class KubeLease:
    """The `kubernetes` backend of `leader_election`."""

    def __init__(self, settings: LeaderElectionConfig):
        self.settings = settings
        self._api: client.ApiClient | None = None
        self._election: LeaderElection | None = None
        self._identity: str | None = None

    def namespace(self) -> str:
        """`leader_election.namespace`, else the pod's own (where the chart grants Leases)."""
        if self.settings.namespace:
            return self.settings.namespace
        try:
            return POD_NAMESPACE.read_text().strip() or "default"
        except OSError:
            return "default"

    async def _ready(self, identity: str, lease_seconds: float) -> LeaderElection:
        if self._election is None or self._identity != identity:
            if self._api is None:
                conf = client.Configuration()
                if self.settings.kubeconfig or self.settings.kube_context:
                    await config.load_kube_config(
                        config_file=self.settings.kubeconfig,
                        context=self.settings.kube_context,
                        client_configuration=conf,
                    )
                else:
                    config.load_incluster_config(client_configuration=conf)
                self._api = client.ApiClient(configuration=conf)
            lock = _CountingLeaseLock(
                self.settings.lease_name, self.namespace(), identity, self._api
            )
            duration = max(2, round(lease_seconds))  # the Lease counts whole seconds
            self._election = LeaderElection(
                electionconfig.Config(  # only try_acquire_or_renew is used: the Elector times
                    lock,
                    lease_duration=duration,
                    renew_deadline=duration * 0.75,
                    retry_period=1.01,
                    onstarted_leading=_idle,
                    onstopped_leading=_idle,
                )
            )
            self._identity = identity
        return self._election

    async def acquire_or_renew(self, identity: str, lease_seconds: float) -> Grant:
        election = await self._ready(identity, lease_seconds)
        held = await election.try_acquire_or_renew()
        lock = election.election_config.lock
        lease = getattr(lock, "lease_reference", None)
        spec = getattr(lease, "spec", None)
        epoch = int(getattr(spec, "lease_transitions", 0) or 0)
        holder = getattr(spec, "holder_identity", None)
        return Grant(bool(held), epoch, identity if held else holder)

    async def release(self, identity: str) -> None:
        """Clear the holder (as client-go does on a graceful stop), so a standby need not
        wait for the Lease to expire; a stale write is refused by the API server."""
        if self._election is None:
            return
        lock = self._election.election_config.lock
        assert isinstance(lock, LeaseLock)
        found, _ = await lock.get(lock.name, lock.namespace)
        lease = getattr(lock, "lease_reference", None)
        if not found or lease is None or lease.spec.holder_identity != identity:
            return
        lease.spec.holder_identity = None
        await lock.api_instance.replace_namespaced_lease(lock.name, lock.namespace, lease)

    async def close(self) -> None:
        self._election = None
        if self._api is not None:
            api, self._api = self._api, None
            await api.close()
