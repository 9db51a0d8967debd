"""The deploy queue: `--queue` (or `deploy.queue: true`) turns "busy" or "locked by someone
else" into a place in line, and runs the command when its turn comes.

The command is stored as typed, with who typed it and where (`bot.store.queue`). When the
component+env is free (no deploy running, no lock by someone else), the leader claims the
oldest entry and hands it to `run` (wired in `bot.app`: the dispatcher runs the line again as
its owner, so every gate is checked by the same code a fresh command goes through, and a
refusal is said to the owner by name). One entry per component+env at a time; queued,
started and cancelled are SAL entries. An entry a crash cut off is never run again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.core.tasks import within
from bot.deploy.deployer import Deployer
from bot.services import Services
from bot.store.queue import QueueEntry, QueueTable
from bot.store.sal import SalEntry, actor_name

log = logging.getLogger("deploybot.queue")

Runner = Callable[[QueueEntry], Awaitable[None]]


class DeployQueue:
    def __init__(self, services: Services, deployer: Deployer, tick: float = 1.0) -> None:
        self.services, self.deployer, self.tick = services, deployer, tick
        self.table = QueueTable(services.store)
        self.runner: Runner | None = None  # set by the composition root
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def blocker(self, component: str, env: str, actor: str) -> str | None:
        """What `actor`'s deploy of component+env would wait for: `deploy #17 (bob)`, a
        queued entry's turn, or a lock of someone else; None when it may go now."""
        busy = await self.deployer.holder(component, env)
        if busy is not None:
            return busy
        if (component, env) in self._running:
            return "a queued command that is starting"
        lock = await self.services.locks.get(component, env)
        if lock is not None and lock.owner != actor:
            return f"{actor_name(lock.owner)}'s lock"
        return None

    async def add(
        self, component: str, env: str, command: str, actor: str, nick: str, adapter: str,
        room: str, private: bool, identities: tuple[str, ...], behind: str,
    ) -> tuple[QueueEntry, int]:  # fmt: skip
        """Queue a command; returns the entry and its place among those waiting for that
        component+env (1 = next)."""
        entry = await self.table.add(component, env, command, actor, nick, adapter, room,
                                     private, identities, behind)  # fmt: skip
        place = sum(1 for e in await self.table.waiting(component) if e.env == env)
        await self._log(entry, "queued", f"queued #{entry.id} behind {behind}: {command}")
        self.wake()
        return entry, place

    async def cancel(self, entry: QueueEntry, by: str) -> bool:
        if not await self.table.move(entry.id, "queued", "cancelled"):
            return False
        who = "" if by == entry.actor else f" (by {actor_name(by)})"
        await self._log(entry, "cancelled", f"queue #{entry.id} cancelled{who}: {entry.command}",
                        actor=by)  # fmt: skip
        return True

    async def _log(self, e: QueueEntry, result: str, text: str, actor: str = "") -> None:
        env_cfg = self.services.config.env(e.env)
        actor = actor or e.actor
        await self.services.sal.record(
            SalEntry(
                actor=actor, action="queue", component=e.component, env=e.env,
                message=f"{actor_name(actor)}: {text}", result=result,
                sal_project=env_cfg.sal_project if env_cfg else None,
            )
        )  # fmt: skip

    # --- the leader's loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Start what is due; until cancelled (the leader owns it)."""
        await self._after_crash()
        while True:
            try:
                await self.start_due()
            except Exception:
                log.exception("the deploy queue failed a round; trying again")
            self._wake.clear()
            try:
                await within(self._wake.wait(), self.tick)
            except TimeoutError:
                pass

    async def _after_crash(self) -> None:
        """Entries whose turn had come when the last leader died: said, never run again."""
        for e in await self.table.started():
            if await self.table.move(e.id, "started", "interrupted"):
                text = (f"queue #{e.id} ({e.command}) was running when the bot stopped; not run"
                        f" again: check !status {e.component} {e.env}")  # fmt: skip
                await self._log(e, "interrupted", text)
                await self.services.outbox.enqueue(e.room, f"{e.nick}: {text}", adapter=e.adapter)

    async def start_due(self) -> None:
        held: set[tuple[str, str]] = set()  # first in line waits: nobody behind it overtakes
        for e in await self.table.waiting():
            key = (e.component, e.env)
            if key in held or key in self._running:
                continue
            if await self.blocker(e.component, e.env, e.actor):
                held.add(key)
                continue
            if not await self.table.move(e.id, "queued", "started"):
                continue  # cancelled meanwhile
            await self._log(e, "started", f"queue #{e.id}: its turn came: {e.command}")
            self._running[key] = asyncio.create_task(self._turn(e), name=f"queue-{e.id}")

    async def _turn(self, e: QueueEntry) -> None:
        try:
            if self.runner is not None:
                await self.runner(e)
            await self.table.move(e.id, "started", "done")
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("queue #%s failed", e.id)
        finally:
            self._running.pop((e.component, e.env), None)
            self.wake()

    async def stop(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
