"""Deploy records: the `deploys` table (its only reader and writer).

The row is written before each step (requested -> applying -> verifying -> done | failed |
interrupted), so what was in flight when the process died can be found after a restart.

With replicas the store is the deploy guard: a unique index allows one active row per
component+environment, each row carries the leadership epoch it was started under, and a
state change is refused (`Fenced`) once a newer leader holds the lease: a deposed leader
takes no further step, and never overwrites what the new leader recorded.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.control.forge import OpenBump
from bot.deploy.model import Action, DeployRequest, InFlight, Refusal
from bot.store.db import Row, Store, StoreConn
from bot.store.leader import Leadership

ACTIVE_STATES = ("requested", "applying", "verifying")


class Fenced(RuntimeError):
    """A newer leader holds the lease: this replica may not move a deploy on."""


class DeployRecords:
    """The `deploys` table."""

    def __init__(self, store: Store, logs: Path, leadership: Leadership | None = None) -> None:
        self.store = store
        self.logs = logs
        self.leadership = leadership or Leadership()  # its epoch: 0 for a single instance

    def log_path(self, deploy_id: int) -> Path:
        return self.logs / f"{deploy_id}.log"

    async def insert(
        self, req: DeployRequest, version: str, from_version: str | None, commit: str | None,
        mr: OpenBump | None,
    ) -> int:  # fmt: skip
        epoch = self.leadership.epoch

        def write(conn: StoreConn) -> int:
            running = conn.execute(
                "SELECT id, actor FROM deploys WHERE component=? AND env=? AND state IN (?,?,?)",
                (req.component, req.env, *ACTIVE_STATES),
            ).fetchone()
            if running is not None:
                raise Refusal(
                    f"deploy #{running['id']} of {req.component} to {req.env} by"
                    f" {running['actor']} is running; nothing run"
                )
            cur = conn.execute(
                "INSERT INTO deploys (component, env, action, version, from_version, commit_sha,"
                " mr_url, actor, tasks, state, started_at, epoch) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (req.component, req.env, req.action, version, from_version, commit,
                 mr.url if mr else None, req.actor, ",".join(req.tasks), "requested",
                 time.time(), epoch),
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
        fenced, params = self.leadership.not_deposed()
        changed = await self.store.execute(
            f"UPDATE deploys SET state=?{cols} WHERE id=? AND state IN (?,?,?) AND {fenced}",
            (state, *extra.values(), deploy_id, *ACTIVE_STATES, *params),
        )
        if not changed:
            raise Fenced(f"deploy #{deploy_id}: not moved to {state} (finished, or a newer leader)")

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


@dataclass(frozen=True)
class RolledBack:
    """The newest finished deploy of a component+env was a deliberate rollback."""

    actor: str
    at: float
    from_version: str | None
    version: str | None

    def describe(self) -> str:
        when = datetime.fromtimestamp(self.at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        who = self.actor.split(":", 1)[-1]
        old = f" from {self.from_version}" if self.from_version else ""
        return f"rolled back on purpose by {who} at {when}{old} to {self.version or 'unknown'}"


async def deliberate_rollback(store: Store, component: str, env: str) -> RolledBack | None:
    """The rollback that is still in force in env (None once anyone deployed again)."""
    row = await store.fetchone(
        "SELECT action, actor, finished_at, from_version, version FROM deploys WHERE"
        " component=? AND env=? AND state='done' ORDER BY id DESC LIMIT 1",
        (component, env),
    )
    if row is None or row["action"] not in (Action.ROLLBACK, Action.EMERGENCY):
        return None
    return RolledBack(
        str(row["actor"]), float(row["finished_at"] or 0), row["from_version"], row["version"]
    )


async def active_deploys(store: Store) -> list[InFlight]:
    """Deploys not finished yet, oldest first."""
    rows = await store.fetchall(
        "SELECT id, component, env, version, state FROM deploys WHERE state IN (?,?,?) ORDER BY id",
        ACTIVE_STATES,
    )
    return [InFlight(r["id"], r["component"], r["env"], r["version"], r["state"]) for r in rows]


async def deploy_rows(
    store: Store, *, component: str | None = None, deploy_id: int | None = None,
    active: bool = False, limit: int = 500,
) -> list[dict[str, Any]]:  # fmt: skip
    """Deploy rows as plain dicts, newest first (for the pages)."""
    where: list[str] = []
    params: list[object] = []
    if component is not None:
        where.append("component = ?")
        params.append(component)
    if deploy_id is not None:
        where.append("id = ?")
        params.append(deploy_id)
    if active:
        where.append("state IN (?,?,?)")
        params += list(ACTIVE_STATES)
    sql = "SELECT * FROM deploys" + (" WHERE " + " AND ".join(where) if where else "")
    rows = await store.fetchall(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))
    return [dict(r) for r in rows]


async def latest_review(store: Store, component: str, env: str) -> Row | None:
    """The newest review (`!apply` on a `review: true` environment) of component in env."""
    return await store.fetchone(
        "SELECT * FROM deploys WHERE component=? AND env=? AND action='review'"
        " ORDER BY id DESC LIMIT 1",
        (component, env),
    )


async def waiting_review_rows(store: Store) -> list[Row]:
    """The newest review of each component+environment whose state is still `reviewed`
    (waiting for a confirm), oldest first."""
    return await store.fetchall(
        "SELECT * FROM deploys WHERE action='review' AND state='reviewed' AND id IN"
        " (SELECT max(id) FROM deploys WHERE action='review' GROUP BY component, env)"
        " ORDER BY id"
    )


async def claim_review(store: Store, review_id: int, by: str) -> bool:
    """Mark a waiting review confirmed; False when it was not waiting (confirmed twice)."""

    def claim(conn: StoreConn) -> bool:
        cur = conn.execute(
            "UPDATE deploys SET state='confirmed', error=? WHERE id=? AND state='reviewed'",
            (f"confirmed by {by}", review_id),
        )
        return cur.rowcount == 1

    return await store.transaction(claim)


async def release_review(store: Store, review_id: int) -> None:
    """A confirm whose apply was refused leaves the review waiting (it was not confirmed)."""
    await store.execute(
        "UPDATE deploys SET state='reviewed', error=NULL WHERE id=? AND state='confirmed'",
        (review_id,),
    )
