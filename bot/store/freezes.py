"""Deploy freezes said in chat (`!freeze`), persisted, and which freeze starts and ends were
announced (so a restart or a new leader says each once)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bot.store.db import Store

ALL = "*"


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def shown(when: datetime) -> str:
    """`2026-12-05 19:00 UTC`: how a freeze's bounds are said."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True)
class Freeze:
    """One freeze, whatever its source (`chat`, `config`, `calendar`)."""

    key: str  # unique: "chat:12", "config:0", "calendar:<uid>@<start>"
    envs: tuple[str, ...]  # ("*",) = every environment
    start: datetime
    end: datetime
    reason: str
    author: str
    tasks: tuple[str, ...] = ()
    source: str = "chat"

    def covers(self, env: str) -> bool:
        return ALL in self.envs or env in self.envs

    def active(self, now: datetime) -> bool:
        return self.start <= now < self.end

    @property
    def where(self) -> str:
        return "every environment" if ALL in self.envs else ", ".join(self.envs)

    def describe(self) -> str:
        """`freeze #3 of tools until 2026-12-05 19:00 UTC by alice: end of quarter (T12)`."""
        name = f"freeze #{self.key[5:]}" if self.source == "chat" else f"{self.source} freeze"
        tasks = f" ({', '.join(self.tasks)})" if self.tasks else ""
        return (
            f"{name} of {self.where} until {shown(self.end)} by {self.author}: {self.reason}{tasks}"
        )


class FreezeTable:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.changes = 0  # freezes added or lifted through this table (readers' caches)

    async def add(
        self, envs: list[str], start: datetime, end: datetime, reason: str, author: str,
        tasks: list[str],
    ) -> Freeze:  # fmt: skip
        def run(c: Any) -> int:
            cur = c.execute(
                "INSERT INTO freezes (envs, starts_at, ends_at, reason, author, tasks)"
                " VALUES (?,?,?,?,?,?)",
                (",".join(envs), iso(start), iso(end), reason, author, ",".join(tasks)),
            )
            return int(cur.lastrowid)

        fid = await self.store.transaction(run)
        self.changes += 1
        return Freeze(f"chat:{fid}", tuple(envs), start, end, reason, author, tuple(tasks))

    async def current(self, now: datetime) -> list[Freeze]:
        """Chat freezes not lifted and not over."""
        rows = await self.store.fetchall(
            "SELECT * FROM freezes WHERE lifted_at IS NULL AND ends_at > ? ORDER BY id",
            (iso(now),),
        )
        return [self._freeze(r) for r in rows]

    async def ended_since(self, since: datetime) -> list[Freeze]:
        """Chat freezes that ended (or were lifted) after `since`."""
        rows = await self.store.fetchall(
            "SELECT * FROM freezes WHERE ends_at > ? ORDER BY id", (iso(since),)
        )
        return [self._freeze(r) for r in rows]

    async def lift(self, freeze: Freeze, by: str, now: datetime) -> None:
        await self.store.execute(
            "UPDATE freezes SET lifted_at=?, lifted_by=?, ends_at=? WHERE id=?",
            (iso(now), by, iso(now), int(freeze.key.split(":")[1])),
        )
        self.changes += 1

    async def noticed(self, key: str) -> bool:
        return (
            await self.store.fetchone("SELECT 1 FROM freeze_notices WHERE key=?", (key,))
            is not None
        )

    async def notice(self, key: str, now: datetime) -> bool:
        """Mark `key` announced; False when it already was (another path said it)."""

        def run(c: Any) -> bool:
            seen = c.execute("SELECT 1 FROM freeze_notices WHERE key=?", (key,)).fetchone()
            if seen is not None:
                return False
            c.execute("INSERT INTO freeze_notices (key, at) VALUES (?, ?)", (key, iso(now)))
            return True

        return await self.store.transaction(run)

    @staticmethod
    def _freeze(r: Any) -> Freeze:
        row = dict(r)
        tasks = tuple(t for t in row["tasks"].split(",") if t)
        return Freeze(
            f"chat:{row['id']}", tuple(row["envs"].split(",")), parse_iso(row["starts_at"]),
            parse_iso(row["ends_at"]), row["reason"], row["author"], tasks,
        )  # fmt: skip
