"""The deploy queue's rows: a command that waits for a busy or locked component+env, kept
in the store so it survives a restart and a change of leader.

An entry moves queued -> started (its turn came; claimed in one transaction, so it runs at
most once whichever replica leads) or cancelled; a crash between its start and its end
leaves it `interrupted`, never run twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bot.store.db import Store
from bot.store.sal import utcnow


@dataclass(frozen=True)
class QueueEntry:
    id: int
    component: str
    env: str
    command: str  # the chat line as typed, run again when the turn comes
    actor: str
    nick: str
    adapter: str
    room: str
    private: bool
    identities: tuple[str, ...]
    behind: str  # what it waited for when queued: "deploy #17 (bob)"
    state: str
    created_at: str


class QueueTable:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(
        self, component: str, env: str, command: str, actor: str, nick: str, adapter: str,
        room: str, private: bool, identities: tuple[str, ...], behind: str,
    ) -> QueueEntry:  # fmt: skip
        now = utcnow()
        values = (component, env, command, actor, nick, adapter, room, int(private),
                  json.dumps(list(identities)), behind, "queued", now, now)  # fmt: skip

        def write(c: Any) -> int:
            cur = c.execute(
                "INSERT INTO deploy_queue (component, env, command, actor, nick, adapter, room,"
                " private, identities, behind, state, created_at, updated_at)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                values,
            )
            return int(cur.lastrowid)

        new_id = await self.store.transaction(write)
        return QueueEntry(new_id, component, env, command, actor, nick, adapter, room, private,
                          identities, behind, "queued", now)  # fmt: skip

    async def waiting(self, component: str | None = None) -> list[QueueEntry]:
        """Queued entries, oldest first."""
        sql = "SELECT * FROM deploy_queue WHERE state='queued'"
        params: tuple[str, ...] = ()
        if component is not None:
            sql, params = sql + " AND component=?", (component,)
        return [_entry(r) for r in await self.store.fetchall(sql + " ORDER BY id", params)]

    async def get(self, entry_id: int) -> QueueEntry | None:
        row = await self.store.fetchone("SELECT * FROM deploy_queue WHERE id=?", (entry_id,))
        return _entry(row) if row is not None else None

    async def move(self, entry_id: int, old: str, new: str) -> bool:
        """Set the state if it still is `old` (one replica, one turn); False otherwise."""

        def write(c: Any) -> bool:
            cur = c.execute(
                "UPDATE deploy_queue SET state=?, updated_at=? WHERE id=? AND state=?",
                (new, utcnow(), entry_id, old),
            )
            return bool(cur.rowcount)

        return await self.store.transaction(write)

    async def started(self) -> list[QueueEntry]:
        rows = await self.store.fetchall(
            "SELECT * FROM deploy_queue WHERE state='started' ORDER BY id"
        )
        return [_entry(r) for r in rows]


def _entry(r: Any) -> QueueEntry:
    row = dict(r)
    return QueueEntry(
        row["id"], row["component"], row["env"], row["command"], row["actor"], row["nick"],
        row["adapter"], row["room"], bool(row["private"]), tuple(json.loads(row["identities"])),
        row["behind"], row["state"], row["created_at"],
    )  # fmt: skip
