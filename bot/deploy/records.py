"""Deploy records: the `deploys` table (its only reader and writer).

The row is written before each step (requested -> applying -> verifying -> done | failed |
interrupted), so what was in flight when the process died can be found after a restart.
"""

from __future__ import annotations

import time
from pathlib import Path

from bot.control.forge import OpenBump
from bot.core.store import Row, Store, StoreConn
from bot.deploy.model import DeployRequest, InFlight

ACTIVE_STATES = ("requested", "applying", "verifying")


class DeployRecords:
    """The `deploys` table."""

    def __init__(self, store: Store, logs: Path) -> None:
        self.store = store
        self.logs = logs

    def log_path(self, deploy_id: int) -> Path:
        return self.logs / f"{deploy_id}.log"

    async def insert(
        self, req: DeployRequest, version: str, from_version: str | None, commit: str | None,
        mr: OpenBump | None,
    ) -> int:  # fmt: skip
        def write(conn: StoreConn) -> int:
            cur = conn.execute(
                "INSERT INTO deploys (component, env, action, version, from_version, commit_sha,"
                " mr_url, actor, tasks, state, started_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (req.component, req.env, req.action, version, from_version, commit,
                 mr.url if mr else None, req.actor, ",".join(req.tasks), "requested",
                 time.time()),
            )  # fmt: skip
            deploy_id = int(cur.lastrowid or 0)
            conn.execute(
                "UPDATE deploys SET log_path=? WHERE id=?",
                (str(self.log_path(deploy_id)), deploy_id),
            )
            return deploy_id

        return await self.store.transaction(write)

    async def set_state(self, deploy_id: int, state: str, **extra: object) -> None:
        """Move to `state`; `extra` columns (result, error, version) are set with it."""
        allowed = {"result", "error", "version"}
        if not set(extra) <= allowed:
            raise ValueError(f"unknown deploy columns {sorted(set(extra) - allowed)}")
        cols = "".join(f", {k}=?" for k in extra)
        if state not in ACTIVE_STATES:
            cols += f", finished_at={time.time()!r}"
        await self.store.execute(
            f"UPDATE deploys SET state=?{cols} WHERE id=?", (state, *extra.values(), deploy_id)
        )

    async def in_flight(self) -> list[Row]:
        return await self.store.fetchall(
            "SELECT * FROM deploys WHERE state IN (?,?,?) ORDER BY id", ACTIVE_STATES
        )


async def last_deployed(store: Store, component: str, env: str) -> str | None:
    """The version of the newest successful deploy of component to env, if any."""
    row = await store.fetchone(
        "SELECT version FROM deploys WHERE component=? AND env=? AND state='done'"
        " ORDER BY id DESC LIMIT 1",
        (component, env),
    )
    return str(row["version"]) if row and row["version"] else None


async def active_deploys(store: Store) -> list[InFlight]:
    """Deploys not finished yet, oldest first."""
    rows = await store.fetchall(
        "SELECT id, component, env, version, state FROM deploys WHERE state IN (?,?,?) ORDER BY id",
        ACTIVE_STATES,
    )
    return [InFlight(r["id"], r["component"], r["env"], r["version"], r["state"]) for r in rows]
