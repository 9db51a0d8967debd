"""Whether the store answers and can write right now, asked cheaply and under a deadline.

`/ready` on every replica (standbys included) and `/metrics` (`deploybot_store_up`) ask
here, so health tells the truth while the database is down instead of repeating what the
last write happened to find. One probe runs at a time (callers meanwhile share its answer).
"""

from __future__ import annotations

import asyncio
import time

from bot.core.health import StoreHealth, store_reason
from bot.core.tasks import within
from bot.store.db import Store

# PostgreSQL: a server in recovery (a hot standby) answers but cannot write
_PG_WRITABLE = "SELECT NOT pg_is_in_recovery()"


class StoreProbe:
    def __init__(
        self, store: Store, health: StoreHealth, deadline: float = 2.0, keep: float = 0.0
    ) -> None:
        self.store = store
        self.health = health
        self.deadline = deadline
        self.keep = keep
        self._last: tuple[float, str | None] | None = None
        self._running: asyncio.Task[str | None] | None = None

    async def problem(self) -> str | None:
        """None when the store answers and can write; else one line naming the store."""
        if self.keep and self._last is not None and time.monotonic() - self._last[0] < self.keep:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._ask())
        try:
            found = await within(asyncio.shield(self._running), self.deadline)
        except TimeoutError:
            found = f"store {self.store.describe()} did not answer within {self.deadline:g}s"
        self._last = (time.monotonic(), found)
        return found

    @property
    def up(self) -> bool:
        """The last answer (for a gauge read without waiting)."""
        return self._last is None or self._last[1] is None

    async def _ask(self) -> str | None:
        where = self.store.describe()
        if not self.store.is_open:
            return f"store {where} is not open"
        try:
            row = await self.store.fetchone(_PG_WRITABLE if self.store.postgres else "SELECT 1")
        except Exception as exc:  # every kind of failure is an answer here
            return f"store {where} cannot be reached: {_one_line(store_reason(exc))}"
        if not row or not row[0]:
            return f"store {where} cannot write: the server is read-only (in recovery)"
        if not self.health.writable:
            return f"store {where} cannot write: {self.health.error}"
        return None


def _one_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else "unknown error"
