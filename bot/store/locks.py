"""Deploy locks: `!lock` blocks deploys of a component (in one env or all), persisted."""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.db import Store
from bot.store.sal import utcnow

ALL_ENVS = "*"


@dataclass(frozen=True)
class Lock:
    component: str
    env: str  # "*" = every environment
    owner: str
    reason: str
    created_at: str

    def describe(self) -> str:
        where = "all environments" if self.env == ALL_ENVS else self.env
        return f"{self.component} locked in {where} by {self.owner} since {self.created_at}: {self.reason}"


class Locks:
    def __init__(self, store: Store):
        self.store = store

    async def get(self, component: str, env: str | None) -> Lock | None:
        """The lock that blocks component in env (an all-env lock counts), if any."""
        rows = await self.store.fetchall(
            "SELECT * FROM locks WHERE component=? AND env IN (?, ?) ORDER BY env = '*' DESC",
            (component, env or ALL_ENVS, ALL_ENVS),
        )
        return Lock(**dict(rows[0])) if rows else None

    async def all(self) -> list[Lock]:
        rows = await self.store.fetchall("SELECT * FROM locks ORDER BY component, env")
        return [Lock(**dict(r)) for r in rows]

    async def add(self, component: str, env: str | None, owner: str, reason: str) -> Lock:
        lock = Lock(component, env or ALL_ENVS, owner, reason, utcnow())
        await self.store.execute(
            "INSERT INTO locks (component, env, owner, reason, created_at) VALUES (?,?,?,?,?)",
            (lock.component, lock.env, lock.owner, lock.reason, lock.created_at),
        )
        return lock

    async def remove(self, component: str, env: str | None) -> None:
        await self.store.execute(
            "DELETE FROM locks WHERE component=? AND env=?", (component, env or ALL_ENVS)
        )
