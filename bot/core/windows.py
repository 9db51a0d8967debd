"""Deploy windows: when an environment accepts deploys (`environments[].windows`).

Pure functions over plain values. A window is `<days> <HH:MM>-<HH:MM> [<zone>]`, e.g.
`Mon-Thu 13:00-17:00 UTC` or `Mon,Wed,Fri 09:30-12:00 Europe/Berlin`; day ranges may wrap
(`Fri-Mon`), the end is exclusive, and an end before the start runs past midnight into the
next day. No windows at all means deploys are always allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW_RE = re.compile(
    r"^\s*(?P<days>[A-Za-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})-(?P<end>\d{1,2}:\d{2})"
    r"(?:\s+(?P<zone>[A-Za-z0-9_+\-/]+))?\s*$"
)


class WindowError(ValueError):
    """A window string that cannot be parsed; the message says why in one line."""


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday
    start: time
    end: time
    zone: str = "UTC"
    text: str = ""

    def tz(self) -> tzinfo:
        return UTC if self.zone.upper() == "UTC" else ZoneInfo(self.zone)

    def contains(self, now: datetime) -> bool:
        local = now.astimezone(self.tz())
        t = local.time().replace(tzinfo=None)
        if self.start < self.end:
            return local.weekday() in self.days and self.start <= t < self.end
        # past midnight: the part after midnight belongs to the previous day's window
        if local.weekday() in self.days and t >= self.start:
            return True
        return (local.weekday() - 1) % 7 in self.days and t < self.end


def _day(word: str, text: str) -> int:
    key = word.strip().lower()[:3]
    if key not in DAYS or len(word.strip()) < 3:
        raise WindowError(f"{text!r}: unknown day {word!r} (use Mon..Sun)")
    return DAYS.index(key)


def _clock(value: str, text: str) -> time:
    hours, minutes = (int(x) for x in value.split(":"))
    if hours == 24 and minutes == 0:
        return time(23, 59, 59, 999999)
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise WindowError(f"{text!r}: {value} is not a time of day")
    return time(hours, minutes)


def parse_window(text: str) -> Window:
    """`Mon-Thu 13:00-17:00 UTC` -> Window; WindowError when it cannot be read."""
    m = _WINDOW_RE.match(text)
    if m is None:
        raise WindowError(f"{text!r}: expected e.g. 'Mon-Thu 13:00-17:00 UTC'")
    days: set[int] = set()
    for part in m["days"].split(","):
        first, sep, last = part.partition("-")
        a = _day(first, text)
        b = _day(last, text) if sep else a
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    start, end = _clock(m["start"], text), _clock(m["end"], text)
    if start == end:
        raise WindowError(f"{text!r}: the window is empty")
    zone = m["zone"] or "UTC"
    if zone.upper() != "UTC":
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise WindowError(f"{text!r}: unknown time zone {zone!r}") from None
    return Window(frozenset(days), start, end, zone, text.strip())


def parse_windows(texts: Iterable[str]) -> list[Window]:
    return [parse_window(t) for t in texts]


def in_window(windows: Sequence[Window], now: datetime) -> bool:
    """True when `now` (timezone-aware) is inside any window, or there are none."""
    return not windows or any(w.contains(now) for w in windows)


def next_opening(windows: Sequence[Window], now: datetime) -> datetime | None:
    """When the next window opens after `now` (None without windows or when inside one)."""
    if in_window(windows, now):
        return None
    best: datetime | None = None
    for w in windows:
        tz = w.tz()
        local = now.astimezone(tz)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in w.days:
                continue
            opens = datetime.combine(day, w.start, tzinfo=tz)
            if opens > now:
                best = opens if best is None or opens < best else best
                break
    return best.astimezone(UTC) if best else None


def describe_refusal(windows: Sequence[Window], now: datetime) -> str:
    """`outside the deploy windows (Mon-Thu 13:00-17:00 UTC); next opens Mon 13:00 UTC`."""
    shown = ", ".join(w.text for w in windows)
    text = f"outside the deploy windows ({shown})"
    opening = next_opening(windows, now)
    if opening is not None:
        text += f"; next opens {opening.strftime('%a %Y-%m-%d %H:%M')} UTC"
    return text
