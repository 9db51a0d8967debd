"""Owns the bot's background tasks: a task that crashes is logged and restarted with
backoff, never lost silently; one task per name."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from bot.core.tasks import TaskSet

log = logging.getLogger("deploybot")


class Supervisor:
    """Owns named background tasks; restarts one that crashes (with backoff), logs every
    crash. Starting a name that runs replaces it: the old task is cancelled, so a restarted
    starter (the leader's `_lead`) never leaves a second loop of the same kind behind."""

    def __init__(self, first_delay: float = 0.5) -> None:
        self.first_delay = first_delay
        self._tasks = TaskSet()
        self._named: dict[str, asyncio.Task[None]] = {}

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        old = self._named.get(name)
        if old is not None and not old.done():
            if old is asyncio.current_task():
                raise RuntimeError(f"background task {name} cannot replace itself")
            log.info("background task %s started again; the running one is cancelled", name)
            old.cancel()
        self._named[name] = self._tasks.spawn(self._keep(name, factory), name=name)

    def running(self) -> dict[str, int]:
        """How many tasks run under each name (1 each, unless a replaced one is still
        winding down)."""
        counts: dict[str, int] = {}
        for task in self._tasks:
            if not task.done():
                counts[task.get_name()] = counts.get(task.get_name(), 0) + 1
        return counts

    async def _keep(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        delay = self.first_delay
        while True:
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background task %s crashed; restarting in %.1fs", name, delay)
                await asyncio.sleep(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 30.0)

    async def stop(self) -> None:
        await self._tasks.stop()
        self._named.clear()
