"""Deploy windows: parsing `Mon-Thu 13:00-17:00 UTC`, inside/outside, the next opening."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from bot.config.model import ConfigError, parse_config
from bot.core.windows import WindowError, in_window, next_opening, parse_window, parse_windows

# 2026-11-02 is a Monday
MON = datetime(2026, 11, 2, tzinfo=UTC)


def at(day_offset: int, hh: int, mm: int = 0) -> datetime:
    return MON.replace(day=2 + day_offset, hour=hh, minute=mm)


def test_parse_a_toolforge_window() -> None:
    w = parse_window("Mon-Thu 13:00-17:00 UTC")
    assert (sorted(w.days), w.start, w.end, w.zone) == ([0, 1, 2, 3], time(13), time(17), "UTC")


@pytest.mark.parametrize(
    "when, inside",
    [
        (at(0, 13), True),  # opening minute
        (at(3, 16, 59), True),  # Thursday, last minute
        (at(0, 17), False),  # the end is exclusive
        (at(0, 12, 59), False),
        (at(4, 14), False),  # Friday
        (at(6, 14), False),  # Sunday
    ],
)
def test_inside_and_outside(when: datetime, inside: bool) -> None:
    assert in_window(parse_windows(["Mon-Thu 13:00-17:00 UTC"]), when) is inside


def test_no_windows_means_always_open() -> None:
    assert in_window([], at(6, 3)) is True
    assert next_opening([], at(6, 3)) is None


def test_any_of_several_windows_and_day_lists() -> None:
    windows = parse_windows(["Mon,Wed 09:00-10:00", "Fri 15:00-16:00 UTC"])
    assert in_window(windows, at(2, 9, 30)) and in_window(windows, at(4, 15))
    assert not in_window(windows, at(1, 9, 30))


def test_wrapping_day_range_and_overnight_window() -> None:
    weekend = parse_window("Fri-Mon 22:00-02:00 UTC")
    assert sorted(weekend.days) == [0, 4, 5, 6]
    assert in_window([weekend], at(4, 23))  # Friday night
    assert in_window([weekend], at(5, 1))  # early Saturday belongs to Friday's window
    assert in_window([weekend], at(1, 1))  # early Tuesday belongs to Monday's window
    assert not in_window([weekend], at(2, 1))  # early Wednesday: Tuesday has none


def test_time_zone_is_honoured() -> None:
    berlin = parse_windows(["Mon 09:00-10:00 Europe/Berlin"])  # CET = UTC+1 in November
    assert in_window(berlin, at(0, 8, 30))
    assert not in_window(berlin, at(0, 9, 30))


def test_next_opening_is_the_nearest_future_start() -> None:
    windows = parse_windows(["Mon-Thu 13:00-17:00 UTC"])
    assert next_opening(windows, at(0, 18)) == at(1, 13)  # Monday evening -> Tuesday
    assert next_opening(windows, at(3, 18)) == at(7, 13)  # Thursday evening -> next Monday
    assert next_opening(windows, at(0, 14)) is None  # open now


@pytest.mark.parametrize(
    "text, says",
    [
        ("Mon-Thu", "expected e.g."),
        ("Mo 13:00-17:00", "unknown day"),
        ("Funday 13:00-17:00", "unknown day"),
        ("Mon 25:00-26:00", "not a time of day"),
        ("Mon 13:00-13:00", "empty"),
        ("Mon 13:00-17:00 Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_windows_say_why(text: str, says: str) -> None:
    with pytest.raises(WindowError, match=says):
        parse_window(text)


def test_config_rejects_a_bad_window_with_its_path() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"environments": [{"name": "tools", "windows": ["Mon 9-17"]}]})
    assert err.value.errors[0].startswith("environments[0].windows: 'Mon 9-17': expected")
