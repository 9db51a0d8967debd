"""After a restart: each leftover bump intent is asked of the forge, in one flow for both forges.

A bump writes its intent (`bot.control.intents`) before the forge is called and clears it once
its SAL entries are recorded, so an intent found later is a bump the bot died in the middle
of. The forge answers whether its change got there (`ControlForge.find_published`: the pushed
commit on the plain git forge; the commit and its MR on GitLab). If it did, the SAL entries
not written yet are written, marked "recorded after a restart", and the component's room is
told, with the commit or MR and the next command. If it did not, the intent is dropped (one
info log line; nothing changed, so chat hears nothing). If the forge cannot tell now, the
intent is kept and asked again every `sal.retry_every` seconds, with one warning per intent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.control.bumper import Bumper
from bot.control.forge import ForgeUnreachable, Published
from bot.control.intents import Intent

log = logging.getLogger("deploybot.intents")

NOTE = " (recorded after a restart)"
Announce = Callable[[str, str], Awaitable[None]]  # (component, line)


class Recovery:
    def __init__(self, bumper: Bumper, announce: Announce, every: float) -> None:
        self.bumper = bumper
        self.announce = announce
        self.every = every
        self._warned: set[str] = set()

    async def run(self) -> None:
        """Pass over the intents until none is left undecided."""
        while True:
            if not await self.once():
                return
            await asyncio.sleep(self.every)  # the forge's next chance; nothing to wait on

    async def once(self) -> int:
        """One pass over the intents on disk; returns how many the forge could not decide."""
        undecided = 0
        intents = self.bumper.intents
        for it in await asyncio.to_thread(intents.pending):
            async with self.bumper.lock(it.component):  # no bump of it runs meanwhile
                if intents.has(it.id):  # else a bump cleared it meanwhile
                    undecided += not await self._settle(it)
        return undecided

    async def _settle(self, it: Intent) -> bool:
        """Record and announce, or drop, one intent; False when the forge cannot tell now."""
        what = f"{it.component} {it.version} bump ({', '.join(it.olds)})"
        try:
            published = await self.bumper.forge.find_published(it.sha, it.mark)
        except ForgeUnreachable as exc:
            if it.id not in self._warned:
                self._warned.add(it.id)
                log.warning(
                    "cannot tell whether the %s made just before the restart reached the control"
                    " repo: %s; its intent is kept and asked again every %gs",
                    what, exc, self.every,
                )  # fmt: skip
            return False
        if published is None:
            log.info("the %s planned just before the restart never reached the control repo;"
                     " nothing changed, its intent is dropped", what)  # fmt: skip
            self.bumper.intents.clear(it.id)
            return True
        missing = await self._unrecorded(it, published.commit_sha)
        if missing:  # none: recorded before the crash (or an older identical bump)
            await self.bumper.record(it.component, it.version, missing, published, it.actor,
                                     it.tasks, it.action, note=NOTE)  # fmt: skip
            await self.announce(it.component, self.line(it, published))
        self.bumper.intents.clear(it.id)
        return True

    async def _unrecorded(self, it: Intent, sha: str) -> dict[str, str | None]:
        """The intent's environments with no SAL entry for commit `sha` yet."""
        entries = await self.bumper.sal.query(component=it.component, limit=200)
        done = {e.env for e in entries if e.commit_sha == sha}
        return {env: old for env, old in it.olds.items() if env not in done}

    def line(self, it: Intent, published: Published) -> str:
        """What the component's room is told about a change recorded after a restart."""
        bang, c = self.bumper.config.bot.prefix, it.component
        envs = ", ".join(it.olds)
        done = "its SAL entry is now written; nothing was applied by it"
        mr = published.mr
        if mr is None:
            return (
                f"{c} {it.version} was pushed to {self.bumper.forge.branch} in"
                f" {published.commit_sha[:8]} ({envs}) just before the bot restarted; {done}"
                f" — {bang}status {c} to check"
            )
        first = next(iter(it.olds), "<env>")
        nxt = f"{bang}status {c}" if published.action == "closed" else f"{bang}apply {c} {first}"
        return (
            f"{c} {it.version} ({envs}) was being proposed when the bot restarted: bump MR"
            f" !{mr.iid} {published.action}, {mr.url}; {done} — next: {nxt}"
        )
