"""Acknowledged non-deploys (`!ack`): a release deliberately not deployed to an environment.

One per component and environment, persisted. It covers its version and every older one,
so the "undeployed" alert is silent for them and the planner advises no deploy of them
there; a newer release is not covered (the alert comes back for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.core.versions import parse_version
from bot.store.db import Store
from bot.store.sal import utcnow


@dataclass(frozen=True)
class Ack:
    component: str
    env: str
    version: str
    reason: str
    author: str  # the short name of who acked
    tasks: tuple[str, ...] = ()
    created_at: str = ""

    def covers(self, version: str) -> bool:
        """`version` is this release or an older one (versions compare as versions)."""
        mine, theirs = parse_version(self.version), parse_version(version)
        if mine is None or theirs is None:
            return version == self.version
        return theirs.sort_key <= mine.sort_key

    def describe(self) -> str:
        """`acked 0.0.134-… by alice at 2026-12-06T03:00:00Z: local dev only (T12)`."""
        tasks = f" ({', '.join(self.tasks)})" if self.tasks else ""
        return (
            f"acked {self.version} as not for {self.env} by {self.author} at {self.created_at}:"
            f" {self.reason}{tasks}"
        )


class Acks:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def get(self, component: str, env: str) -> Ack | None:
        row = await self.store.fetchone(
            "SELECT * FROM acks WHERE component=? AND env=?", (component, env)
        )
        return _ack(row) if row is not None else None

    async def all(self) -> list[Ack]:
        rows = await self.store.fetchall("SELECT * FROM acks ORDER BY component, env")
        return [_ack(r) for r in rows]

    async def set(
        self, component: str, env: str, version: str, reason: str, author: str, tasks: list[str]
    ) -> tuple[Ack, Ack | None]:
        """Store the ack (replacing the one there); returns (new, replaced)."""
        ack = Ack(component, env, version, reason, author, tuple(tasks), utcnow())

        def run(c: Any) -> Ack | None:
            row = c.execute(
                "SELECT * FROM acks WHERE component=? AND env=?", (component, env)
            ).fetchone()
            c.execute("DELETE FROM acks WHERE component=? AND env=?", (component, env))
            c.execute(
                "INSERT INTO acks (component, env, version, reason, author, tasks, created_at)"
                " VALUES (?,?,?,?,?,?,?)",
                (component, env, version, reason, author, ",".join(tasks), ack.created_at),
            )
            return _ack(row) if row is not None else None

        return ack, await self.store.transaction(run)

    async def remove(self, component: str, env: str) -> Ack | None:
        """Remove the ack; returns it (None: there was none)."""

        def run(c: Any) -> Ack | None:
            row = c.execute(
                "SELECT * FROM acks WHERE component=? AND env=?", (component, env)
            ).fetchone()
            c.execute("DELETE FROM acks WHERE component=? AND env=?", (component, env))
            return _ack(row) if row is not None else None

        return await self.store.transaction(run)


def _ack(r: Any) -> Ack:
    row = dict(r)
    tasks = tuple(t for t in row["tasks"].split(",") if t)
    return Ack(
        row["component"], row["env"], row["version"], row["reason"], row["author"], tasks,
        row["created_at"],
    )  # fmt: skip
