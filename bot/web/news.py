"""The board's "Just announced", read from the store: the newest announcements the bot
queued for chat (outbox rows the announcer wrote: no adapter chosen), so a reload or a
restart shows what the rooms were told. New ones arrive over `/events` while the page is
open. Read-only: the outbox itself belongs to `bot.delivery`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from bot.store.db import Store

LIMIT = 30  # as many as the page keeps from the live stream


@dataclass(frozen=True)
class NewsItem:
    at: float
    room: str
    text: str

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.at, UTC).strftime("%H:%M:%S")


async def recent_news(store: Store, limit: int = LIMIT) -> list[NewsItem]:
    """The newest announcements first."""
    rows = await store.fetchall(
        "SELECT created_at, room, text FROM outbox WHERE adapter IS NULL ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [NewsItem(float(r["created_at"]), r["room"], r["text"]) for r in rows]
