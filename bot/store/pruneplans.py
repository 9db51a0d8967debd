"""The last `!prune plan` of each component: exactly what a later `!prune apply` may delete."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from bot.store.db import Store
from bot.store.freezes import iso, parse_iso


@dataclass(frozen=True)
class SavedPlan:
    component: str
    versions: tuple[str, ...]  # oldest first
    made_at: datetime
    author: str


class PrunePlans:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def save(self, component: str, versions: list[str], now: datetime, author: str) -> None:
        await self.store.execute("DELETE FROM prune_plans WHERE component=?", (component,))
        await self.store.execute(
            "INSERT INTO prune_plans (component, versions, made_at, author) VALUES (?,?,?,?)",
            (component, json.dumps(versions), iso(now), author),
        )

    async def get(self, component: str) -> SavedPlan | None:
        row = await self.store.fetchone("SELECT * FROM prune_plans WHERE component=?", (component,))
        if row is None:
            return None
        r = dict(row)
        return SavedPlan(
            component, tuple(json.loads(r["versions"])), parse_iso(r["made_at"]), r["author"]
        )

    async def forget(self, component: str) -> None:
        await self.store.execute("DELETE FROM prune_plans WHERE component=?", (component,))
