"""One cluster's Deployments and Helm release Secrets, read in one list each and shared.

`!status` over 100 components asked the API twice per component (its namespace's
Deployments, its release's Secrets): 200 round trips per cluster, most of them waiting in
turn. `ClusterLists` answers every namespace's question from one cluster-wide list of
Deployments and one of Helm's release Secrets (label `owner=helm`), read once for every
caller that asks while it is in flight or within `reuse` seconds after; the monitors and the
deployer's checks read the same copy. An API that refuses the cluster scope (namespaced RBAC:
403) is asked per namespace instead, each namespace once, and that choice is kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.cluster.helmrecords import SECRET_TYPE
from bot.core.tasks import shared

ListAll = Callable[[], Awaitable[Any]]  # one cluster-wide LIST (a kubernetes.aio V1...List)
ListIn = Callable[[str], Awaitable[Any]]  # the same LIST in one namespace
Refused = Callable[[BaseException], bool]  # is this the API refusing the cluster scope?


class SharedList:
    """The objects of one kind by namespace, from the newest list; single-flight."""

    def __init__(
        self,
        list_all: ListAll,
        list_in: ListIn,
        refused: Refused,
        reuse: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_all, self._list_in, self._refused = list_all, list_in, refused
        self.reuse, self.clock = reuse, clock
        self.cluster_scope = True  # until the API refuses it
        self._all: tuple[float, asyncio.Future[dict[str, list[Any]]]] | None = None
        self._per_ns: dict[str, tuple[float, asyncio.Future[list[Any]]]] = {}

    async def in_namespace(self, namespace: str) -> list[Any]:
        if self.cluster_scope:
            try:
                return (await self._shared_all()).get(namespace, [])
            except Exception as exc:
                if not self._refused(exc):
                    raise
                self.cluster_scope = False
        return await self._shared_ns(namespace)

    def forget(self) -> None:
        """The next question lists again (after the bot changed what runs)."""
        self._all = None
        self._per_ns.clear()

    def _fresh(self, entry: tuple[float, asyncio.Future[Any]] | None) -> bool:
        if entry is None:
            return False
        started, future = entry
        if not future.done():
            return True  # in flight: share it
        return (
            not future.cancelled()
            and future.exception() is None
            and (self.clock() - started < self.reuse)
        )

    async def _shared_all(self) -> dict[str, list[Any]]:
        if not self._fresh(self._all):
            self._all = (self.clock(), shared(self._by_namespace()))
        assert self._all is not None
        return await asyncio.shield(self._all[1])

    async def _by_namespace(self) -> dict[str, list[Any]]:
        result = await self._list_all()
        out: dict[str, list[Any]] = {}
        for item in result.items or []:
            out.setdefault(item.metadata.namespace or "", []).append(item)
        return out

    async def _shared_ns(self, namespace: str) -> list[Any]:
        entry = self._per_ns.get(namespace)
        if not self._fresh(entry):
            entry = (self.clock(), shared(self._items_in(namespace)))
            self._per_ns[namespace] = entry
        assert entry is not None
        return await asyncio.shield(entry[1])

    async def _items_in(self, namespace: str) -> list[Any]:
        return list((await self._list_in(namespace)).items or [])


def helm_secrets(items: list[Any]) -> list[Any]:
    """Only Helm's release records (a namespace's list may hold other owner=helm Secrets)."""
    return [s for s in items if s.type in (None, SECRET_TYPE)]
