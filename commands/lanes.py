"""Which chat commands wait for which: per-key FIFO lanes, so one slow command stalls no one else.

A command that changes something holds its user's lane: one person's `!deploy` then `!apply`
run in the order typed. Reads (`!status`, `!where`, `!sal`, `!whoami`, `!help` — every
command open to anyone) and `--emergency` hold no lane and never wait. One deploy per
component+environment is the deployer's own guard, which answers at once instead of queueing
a second sync behind the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from bot.chat.base import Message
from bot.config.auth import Role


def lane_keys(msg: Message, role: Role, flags: Iterable[str]) -> tuple[str, ...]:
    """The lanes a command must hold: none for reads and emergencies, else its user's."""
    if role == Role.anyone or "emergency" in set(flags):
        return ()
    who = msg.identities[0] if msg.identities else msg.nick
    return (f"user:{msg.adapter}:{who}",)


class Lanes:
    """Per-key FIFO: a holder waits only for the earlier holders of one of its keys."""

    def __init__(self) -> None:
        self._tails: dict[str, asyncio.Future[None]] = {}

    def busy(self, keys: Iterable[str]) -> bool:
        return any(k in self._tails for k in keys)

    @asynccontextmanager
    async def hold(self, keys: tuple[str, ...]) -> AsyncIterator[None]:
        if not keys:
            yield
            return
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        before = {self._tails[k] for k in keys if k in self._tails}
        for k in keys:
            self._tails[k] = mine
        try:
            if before:
                await asyncio.wait(before)  # an earlier holder always resolves its future
            yield
        finally:
            mine.set_result(None)
            for k in keys:
                if self._tails.get(k) is mine:
                    del self._tails[k]
