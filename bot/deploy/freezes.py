"""Deploy freezes: the one gate every deploy passes, and the start and end announcements.

A freeze comes from chat (`!freeze`, stored), from the config (`freezes:`) or from the
iCalendar feed (`freeze_calendar`). While one covers an environment, every deploy there is
refused naming the freeze, its end and its author, except `--emergency` and an admin's
`--force` with a reason (both kept as a note for the SAL and the start line). Starts and
ends are announced once each (`freeze_notices`), in the default room and every component
room, and written to the SAL; only the leader runs the loop that notices them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.core.tasks import within
from bot.deploy.freezecal import FreezeCalendar
from bot.services import Services
from bot.store.freezes import ALL, Freeze, FreezeTable, shown
from bot.store.sal import SalEntry, actor_name

log = logging.getLogger("deploybot.freezes")

RECENT = timedelta(minutes=15)  # older starts and ends are not announced after a restart
ADVICE_FRESH = 1.0  # seconds the freezes read for the planner's advice are reused


def planned(services: Services) -> list[Freeze]:
    """The config's freezes."""
    return [
        Freeze(
            f"config:{i}",
            tuple(ALL if e == "all" else e for e in f.envs),
            f.start,
            f.end,
            f.reason,
            f.author,
            source="config",
        )  # fmt: skip
        for i, f in enumerate(services.config.freezes)
    ]


def refusal(freeze: Freeze, env: str) -> str:
    return (
        f"{env} is frozen: {freeze.describe()}; nothing run (--emergency, or an admin's"
        " --force with a reason)"
    )


class FreezeBook:
    """Every freeze the bot knows, and the gate."""

    def __init__(
        self, services: Services, now: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick: float = 1.0,
    ) -> None:  # fmt: skip
        self.services, self.now, self.tick = services, now, tick
        self.table = FreezeTable(services.store)
        cfg = services.config
        self.calendar = (
            FreezeCalendar(cfg.freeze_calendar, cfg.env_names, cfg.freeze_calendar_timeout)
            if cfg.freeze_calendar
            else None
        )
        self._wake = asyncio.Event()
        self._for_advice: tuple[float, int, asyncio.Future[list[Freeze]]] | None = None

    async def known(self, now: datetime) -> list[Freeze]:
        """Freezes not over at `now` (active or coming), earliest end first."""
        found = await self.table.current(now) + planned(self.services)
        if self.calendar is not None:
            found += await self.calendar.freezes(now)
        return sorted((f for f in found if f.end > now), key=lambda f: (f.end, f.key))

    async def active(self, env: str | None, now: datetime | None = None) -> list[Freeze]:
        """Freezes in force now, in `env` (None: anywhere)."""
        now = now or self.now()
        return [
            f for f in await self.known(now) if f.active(now) and (env is None or f.covers(env))
        ]

    async def in_force(self, env: str) -> str | None:
        """The freeze in force in `env` now, described (the planner names it as a gate).
        A `!status` asks this of every environment of every component: the freezes known are
        read at most once a second, and again at once after one was added or lifted here (the
        gate itself, `freeze_gate`, always reads them afresh)."""
        mono, now = time.monotonic(), self.now()
        cached = self._for_advice
        if cached is None or mono - cached[0] >= ADVICE_FRESH or cached[1] != self.table.changes:
            # one read shared by the callers asking together (a cold !status asks at once)
            read = asyncio.ensure_future(self.known(now))
            cached = self._for_advice = (mono, self.table.changes, read)
        try:
            known = await asyncio.shield(cached[2])
        except Exception:
            if self._for_advice is cached:  # a failed read is not kept
                self._for_advice = None
            raise
        frozen = [f for f in known if f.active(now) and f.covers(env)]
        return frozen[-1].describe() if frozen else None

    async def freeze_gate(
        self, env: str, now: datetime, actor: str, force: bool, emergency: bool,
        reason: str = "", notes: list[str] | None = None,
    ) -> str | None:  # fmt: skip
        """The refusal of a deploy to `env` at `now`, or None. `force` is an admin's (the
        caller checked the role); it needs a `reason`. Overrides go into `notes`."""
        frozen = await self.active(env, now)
        if not frozen:
            return None
        freeze = frozen[-1]  # the one that lasts longest
        if emergency:
            (notes if notes is not None else []).append(f"during {freeze.describe()}: --emergency")
            return None
        if force and reason:
            (notes if notes is not None else []).append(
                f"during {freeze.describe()}: overridden with --force by"
                f" {actor_name(actor)}: {reason}"
            )
            return None
        if force:
            return (
                f"{env} is frozen: {freeze.describe()}; --force during a freeze needs a"
                ' reason (add it in quotes: --force "why"); nothing run'
            )
        return refusal(freeze, env)

    # --- announcements ----------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        """The leader's loop: announce each start and end once."""
        while True:
            try:
                await self.announce_edges()
            except Exception:
                log.exception("freeze announcements failed; trying again")
            self._wake.clear()
            try:
                await within(self._wake.wait(), self.tick)
            except TimeoutError:
                pass

    async def announce_edges(self) -> None:
        now = self.now()
        seen = await self.table.ended_since(now - RECENT) + planned(self.services)
        if self.calendar is not None:
            seen += await self.calendar.freezes(now)
        for f in seen:
            if f.active(now) and now - f.start <= RECENT:
                await self.say(f, "start", f"deploy freeze started: {f.describe()}; deploys"
                               " there are refused except --emergency", now)  # fmt: skip
            elif f.end <= now and now - f.end <= RECENT:
                await self.say(f, "end", f"deploy freeze over: {self._over(f)}", now)

    @staticmethod
    def _over(f: Freeze) -> str:
        name = f"freeze #{f.key[5:]}" if f.source == "chat" else f"{f.source} freeze"
        return f"{name} of {f.where} ended at {shown(f.end)} ({f.reason}); deploys are open again"

    async def say(self, f: Freeze, edge: str, line: str, now: datetime, actor: str = "") -> None:
        """Announce and log one edge of a freeze, once."""
        if not await self.table.notice(f"{f.key}:{edge}", now):
            return
        cfg = self.services.config
        rooms = {cfg.chat.default_room.casefold(): cfg.chat.default_room}
        for name in cfg.components:
            room = self.services.announcer.room_for(name)
            rooms.setdefault(room.casefold(), room)
        for room in rooms.values():
            await self.services.announcer.announce(line, room=room, key=f"freeze:{f.key}:{edge}")
        envs = cfg.env_names if ALL in f.envs else list(f.envs)
        for env in envs:
            env_cfg = cfg.env(env)
            await self.services.sal.record(
                SalEntry(
                    actor=actor or (f.author if f.source == "chat" else f"{f.source}:freeze"),
                    action="freeze", message=f"{actor_name(actor) if actor else f.author}: {line}",
                    env=env, tasks=list(f.tasks), result={"start": "frozen"}.get(edge, "unfrozen"),
                    sal_project=env_cfg.sal_project if env_cfg else None,
                )
            )  # fmt: skip
