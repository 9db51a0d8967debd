"""Leader election among replicas: one acts (chat, event worker, outbox, deploys), the
others stand by and only take webhooks.

`Leadership` is what the rest of the bot asks: "may I act now?". It is True only while a
lease held by this replica is valid *by our own clock, counted from before the renewal was
sent*, minus a safety margin; the lease's deadline in the backend is counted from when the
renewal arrived, which is later. So a replica cut off from the backend stops acting before
any other replica can take the lease (fencing by time), and every takeover raises the
lease's epoch, which deploy rows record.

Backends: `PostgresLease` (a row in the shared store, renewed with a deadline on the
database's clock) here; a Kubernetes Lease in `bot/cluster/lease.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import sqlalchemy as sa

from bot.core.tasks import within
from bot.store.db import Store

log = logging.getLogger("deploybot.leader")

NOT_DEPOSED = "NOT EXISTS (SELECT 1 FROM leader_lease WHERE epoch > ?)"


@dataclass(frozen=True)
class Grant:
    """A backend's answer: held (with the epoch) or not (with the current holder)."""

    held: bool
    epoch: int
    holder: str | None


class LeaseBackend(Protocol):
    async def acquire_or_renew(self, identity: str, lease_seconds: float) -> Grant: ...

    async def release(self, identity: str) -> None: ...

    async def close(self) -> None: ...


def replica_identity() -> str:
    """Who this replica is in the lease: host name (the pod name) and process id."""
    return f"{socket.gethostname()}/{os.getpid()}"


class Leadership:
    """May this replica act now? (Single instance: always.)"""

    def __init__(self, lease_seconds: float | None = None, margin: float | None = None):
        self.single = lease_seconds is None
        self.lease_seconds = lease_seconds or 0.0
        self.margin = margin if margin is not None else max(1.0, self.lease_seconds * 0.2)
        self.epoch = 0
        self.lost_at: float | None = None
        self._valid_until = float("inf") if self.single else 0.0

    @property
    def is_leader(self) -> bool:
        return self.may_act()

    def may_act(self) -> bool:
        return time.monotonic() < self._valid_until

    def renewed(self, sent_at: float, epoch: int) -> None:
        self._valid_until = sent_at + self.lease_seconds - self.margin
        self.epoch = epoch

    def fence(self) -> None:
        """Stop acting for good (this process leaves; a fresh one campaigns again)."""
        if not self.single:
            self._valid_until = 0.0
            self.lost_at = time.monotonic()

    def valid_for(self) -> float:
        return self._valid_until - time.monotonic()

    @property
    def starts_empty(self) -> bool:
        """Replicas: a new leader starts with empty flood budgets (the previous leader may
        just have spent the server's)."""
        return not self.single

    def not_deposed(self) -> tuple[str, tuple[int]]:
        """A SQL condition, with its parameter, that holds while no newer leader has the
        lease: a write guarded by it is fenced in the same statement. The lease's table is
        named only here and in the backends."""
        return NOT_DEPOSED, (self.epoch,)


class Elector:
    """Campaign, renew every lease/3, and call `on_elected` / `on_lost` on each change.

    A renewal that hangs (a frozen network) is abandoned after its share of the lease and
    tried again on a fresh connection; leadership ends when its validity runs out."""

    def __init__(
        self,
        backend: LeaseBackend,
        leadership: Leadership,
        on_elected: Callable[[], None],
        on_lost: Callable[[], None],
        identity: str | None = None,
    ):
        self.backend = backend
        self.leadership = leadership
        self.identity = identity or replica_identity()
        self.on_elected = on_elected
        self.on_lost = on_lost
        self._leading = False

    @property
    def interval(self) -> float:
        return max(0.2, self.leadership.lease_seconds / 3)

    async def run(self) -> None:
        watchdog = asyncio.create_task(self._watch(), name="leader-watchdog")
        try:
            while True:
                sent_at = time.monotonic()
                grant = await self._attempt()
                if grant is not None and grant.held and self.leadership.lost_at is None:
                    self.leadership.renewed(sent_at, grant.epoch)
                    if not self._leading:
                        self._leading = True
                        log.info("leader: elected (epoch %d, %s)", grant.epoch, self.identity)
                        self.on_elected()
                await asyncio.sleep(max(0.0, sent_at + self.interval - time.monotonic()))
        finally:
            watchdog.cancel()

    async def _attempt(self) -> Grant | None:
        try:
            return await within(
                self.backend.acquire_or_renew(self.identity, self.leadership.lease_seconds),
                timeout=self.interval,
            )
        except Exception as exc:  # an unreachable or hung backend: try again next round
            log.warning("leader lease: renewal failed: %s", _one_line(exc))
            return None

    async def _watch(self) -> None:
        """Notice the moment leadership runs out, whatever the renewals are doing."""
        while True:
            if self._leading and not self.leadership.may_act():
                self._leading = False
                self.leadership.fence()
                log.error(
                    "leader: lease not renewed in time; stopped acting (epoch %d)",
                    self.leadership.epoch,
                )
                self.on_lost()
            await asyncio.sleep(0.05)

    async def resign(self) -> None:
        if self._leading:
            self._leading = False
            self.leadership.fence()
            try:
                await within(self.backend.release(self.identity), timeout=2.0)
            except Exception:  # it expires by itself
                log.info("leader lease not released; it expires by itself")
        with contextlib.suppress(Exception):
            await within(self.backend.close(), timeout=2.0)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class PostgresLease:
    """The lease is a row in the shared PostgreSQL store, renewed with a deadline on the
    database's clock; each change of holder raises the epoch. Own connection (not the
    store's queue), opened afresh when a call was abandoned."""

    NAME = "deploybot"

    def __init__(self, store: Store):
        self.store = store
        self._engine: sa.Engine | None = None
        self._executor: ThreadPoolExecutor | None = None

    def _fresh(self) -> tuple[sa.Engine, ThreadPoolExecutor]:
        if self._engine is None or self._executor is None:
            self._engine = self.store.engine()
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
        return self._engine, self._executor

    def _abandon(self) -> None:
        """A call hung: leave that connection and thread behind, start over next time."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)
        self._engine, self._executor = None, None

    async def _call(self, fn: Callable[[sa.Engine], Grant | None]) -> Grant | None:
        engine, executor = self._fresh()
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn, engine)
        except BaseException:
            self._abandon()
            raise

    async def acquire_or_renew(self, identity: str, lease_seconds: float) -> Grant:
        def run(engine: sa.Engine) -> Grant:
            with engine.begin() as conn:
                row = conn.execute(
                    sa.text(
                        "INSERT INTO leader_lease (name, holder, epoch, renewed_at, expires_at)"
                        " VALUES (:name, :me, 1, now(), now() + make_interval(secs => :secs))"
                        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                        " epoch = CASE WHEN leader_lease.holder = excluded.holder"
                        " THEN leader_lease.epoch ELSE leader_lease.epoch + 1 END,"
                        " renewed_at = now(), expires_at = excluded.expires_at"
                        " WHERE leader_lease.holder = excluded.holder"
                        " OR leader_lease.expires_at <= now()"
                        " RETURNING epoch"
                    ),
                    {"name": self.NAME, "me": identity, "secs": float(lease_seconds)},
                ).first()
                if row is not None:
                    return Grant(True, int(row[0]), identity)
                other = conn.execute(
                    sa.text("SELECT holder, epoch FROM leader_lease WHERE name = :name"),
                    {"name": self.NAME},
                ).first()
                return Grant(False, int(other[1]) if other else 0, other[0] if other else None)

        grant = await self._call(run)
        assert grant is not None
        return grant

    async def release(self, identity: str) -> None:
        def run(engine: sa.Engine) -> None:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "UPDATE leader_lease SET expires_at = now() WHERE name = :name"
                        " AND holder = :me"
                    ),
                    {"name": self.NAME, "me": identity},
                )

        await self._call(run)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
        self._abandon()
