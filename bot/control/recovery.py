"""After a restart: each leftover bump intent is asked of the forge, in one flow for both forges.

A bump writes its intent (`bot.control.intents`) before the forge is called and clears it once
its SAL entries are recorded, so an intent found later is a bump the bot died in the middle
of. The forge answers whether its change got there (`ControlForge.find_published`: the pushed
commit on the plain git forge; the commit and its MR on GitLab). If it did, the SAL entries
not written yet are written, marked "recorded after a restart", and the component's room is
told, with the commit or MR and the next command. If it did not, the call the crash cut off
may still land (a push to a slow remote): the intent is asked again every `IN_FLIGHT_EVERY`
seconds until the forge's `in_flight` seconds after it was written, then dropped, and the room is told that
nothing changed (the user's command never finished). If the forge cannot tell now, the
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
IN_FLIGHT_EVERY = 2.0  # s between looks at an intent whose call may still land
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
            wait = await self.once()
            if not wait:
                return
            await asyncio.sleep(wait)  # the forge's next chance; nothing to wait on

    async def once(self) -> float:
        """One pass over the intents on disk; returns seconds until the next pass (0: none
        needed, every intent was decided)."""
        wait = 0.0
        intents = self.bumper.intents
        for it in await asyncio.to_thread(intents.pending):
            async with self.bumper.lock(it.component):  # no bump of it runs meanwhile
                if not intents.has(it.id):  # a bump cleared it meanwhile
                    continue
                if again := await self._settle(it):
                    wait = min(wait or again, again)
        return wait

    async def _settle(self, it: Intent) -> float:
        """Record and announce, or drop, one intent; else seconds until it is asked again."""
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
            return self.every
        if published is None:
            if self.bumper.intents.age(it.id) < self.bumper.forge.in_flight:
                return IN_FLIGHT_EVERY
            log.info("the %s planned just before the restart never reached the control repo;"
                     " nothing changed, its intent is dropped", what)  # fmt: skip
            await self.announce(it.component, self.never_line(it))
            self.bumper.intents.clear(it.id)
            return 0.0
        missing = await self._unrecorded(it, published.commit_sha)
        if missing:  # none: recorded before the crash (or an older identical bump)
            await self.bumper.record(it.component, it.version, missing, published, it.actor,
                                     it.tasks, it.action, note=NOTE)  # fmt: skip
            await self.announce(it.component, self.line(it, published))
        self.bumper.intents.clear(it.id)
        return 0.0

    async def _unrecorded(self, it: Intent, sha: str) -> dict[str, str | None]:
        """The intent's environments with no SAL entry for commit `sha` yet."""
        entries = await self.bumper.sal.query(component=it.component, limit=200)
        done = {e.env for e in entries if e.commit_sha == sha}
        return {env: old for env, old in it.olds.items() if env not in done}

    def never_line(self, it: Intent) -> str:
        """What the room is told about a bump the crash stopped before the forge had it."""
        forge = self.bumper.forge
        c, where = it.component, forge.branch if forge.kind == "git" else "GitLab"
        sha = f"{it.sha[:8]}, " if it.sha else ""
        return (
            f"{c} {it.version} ({sha}{', '.join(it.olds)}) never reached {where} before the bot"
            f" restarted; nothing changed — {self.bumper.config.bot.prefix}status {c} to check,"
            " then try again"
        )

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
