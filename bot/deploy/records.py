"""Deploy records: what one deploy is, and its row in the `deploys` table.

The row is written before each step (requested -> applying -> verifying -> done | failed |
interrupted), so what was in flight when the process died can be found after a restart.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.control.forge import OpenBump
from bot.core.store import Store
from bot.deploy.preflight import Checked

ACTIVE_STATES = ("requested", "applying", "verifying")


@dataclass
class DeployRequest:
    component: str
    env: str
    actor: str
    action: str = "apply"  # apply | auto-apply | rollback | rollback-emergency | promote
    tasks: tuple[str, ...] = ()
    force: bool = False  # admin override of windows / requires (the caller checks the role)
    version: str | None = None  # rollbacks: the version the deploy must end up at


@dataclass
class Deploy:
    id: int
    req: DeployRequest
    version: str
    from_version: str | None
    commit: str | None  # the control-repo commit checked out (None: emergency rollback)
    source: str  # e.g. `main@1a2b3c4d` or `bump_builds-api (MR !12)@...`
    mr: OpenBump | None
    checked: Checked
    started: float = field(default_factory=time.monotonic)

    @property
    def refs(self) -> list[str]:
        """What the SAL line cites: the MR, else the commit."""
        if self.mr is not None:
            return [f"!{self.mr.iid}"]
        return [self.commit[:8]] if self.commit else []


@dataclass(frozen=True)
class DeployOutcome:
    id: int | None
    state: str  # done | failed | refused | interrupted
    line: str
    version: str | None = None


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
        def write(conn: sqlite3.Connection) -> int:
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

    async def in_flight(self) -> list[sqlite3.Row]:
        return await self.store.fetchall(
            "SELECT * FROM deploys WHERE state IN (?,?,?) ORDER BY id", ACTIVE_STATES
        )


def format_duration(seconds: float) -> str:
    minutes, secs = divmod(max(int(seconds), 0), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
