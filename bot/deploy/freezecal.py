"""The freeze calendar: an iCalendar feed (`freeze_calendar`) whose events are freezes.

Read with `icalendar`, recurring events expanded with `recurring-ical-events` (RRULE, EXDATE,
moved occurrences). An event freezes the environments named in its CATEGORIES (none, or
`all`: every environment); its SUMMARY is the reason and its ORGANIZER's name the author.
The feed is a local path, a file:// URL or an http(s) URL (fetched with a timeout); it is
read again at most every `refresh` seconds, and a feed that cannot be read keeps the last
good copy (logged once per failure streak) rather than lifting every planned freeze.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import aiohttp

from bot.store.freezes import ALL, Freeze, iso

log = logging.getLogger("deploybot.freezes")

LOOK_BACK = timedelta(days=1)
LOOK_AHEAD = timedelta(days=14)


def _utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):  # an all-day event: midnight UTC
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError(f"not a date: {value!r}")


def _categories(event: Any) -> list[str]:
    raw = event.get("CATEGORIES")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [str(c).strip().lower() for item in items for c in item.cats]


def freezes_in(text: str | bytes, envs: list[str], now: datetime) -> list[Freeze]:
    """The calendar's freezes that overlap [now - 1 day, now + 14 days]."""
    import icalendar  # with recurring_ical_events ~4.5 MB: loaded only where a feed is read
    import recurring_ical_events

    cal = icalendar.Calendar.from_ical(text)
    events = recurring_ical_events.of(cal).between(now - LOOK_BACK, now + LOOK_AHEAD)
    out = []
    for event in events:
        if event.name != "VEVENT" or event.get("DTSTART") is None:
            continue
        start = _utc(event["DTSTART"].dt)
        end = _utc(event["DTEND"].dt) if event.get("DTEND") else start + timedelta(days=1)
        cats = _categories(event)
        named = tuple(c for c in cats if c in envs)
        if not cats or "all" in cats:
            named = (ALL,)
        if not named:
            continue  # an event about other environments
        organizer = event.get("ORGANIZER")
        author = str(organizer.params.get("CN", "")) if organizer is not None else ""
        uid = str(event.get("UID", "event"))
        out.append(
            Freeze(
                f"calendar:{uid}@{iso(start)}",
                named,
                start,
                end,
                str(event.get("SUMMARY", "freeze")).strip() or "freeze",
                author or "the freeze calendar",
                source="calendar",
            )  # fmt: skip
        )
    return out


class FreezeCalendar:
    """The feed, cached."""

    def __init__(self, source: str, envs: list[str], timeout: float, refresh: float = 300.0):
        self.source, self.envs, self.timeout, self.refresh = source, envs, timeout, refresh
        self._text: bytes | None = None
        self._read_at = -1e18
        self._failing = False

    async def freezes(self, now: datetime) -> list[Freeze]:
        if time.monotonic() - self._read_at >= self.refresh:
            await self._read()
        if self._text is None:
            return []
        try:
            return freezes_in(self._text, self.envs, now)
        except Exception as exc:  # a malformed feed is the feed's fault, not a crash
            self._complain(f"cannot parse {self.source}: {exc}")
            return []

    async def _read(self) -> None:
        self._read_at = time.monotonic()
        try:
            text = await self._fetch()
            import icalendar  # loaded only where a feed is configured (see freezes_in)

            icalendar.Calendar.from_ical(text)
        except Exception as exc:
            self._complain(
                f"cannot read the freeze calendar {self.source}: {exc or type(exc).__name__}"
            )
            return
        self._text, self._failing = text, False

    async def _fetch(self) -> bytes:
        url = urlparse(self.source)
        if url.scheme in ("http", "https"):
            limit = aiohttp.ClientTimeout(total=self.timeout)
            async with aiohttp.ClientSession(timeout=limit) as http, http.get(self.source) as r:
                r.raise_for_status()
                return await r.read()
        path = Path(unquote(url.path)) if url.scheme == "file" else Path(self.source)
        return await asyncio.to_thread(path.expanduser().read_bytes)

    def _complain(self, line: str) -> None:
        if not self._failing:
            log.warning("%s; keeping the last copy read", line)
        self._failing = True
