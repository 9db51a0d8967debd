"""How a version reads in a chat line (`0.0.134 (43712340)` for a CI release version), for
tests that read the bot's lines: the SAL, the web pages and `--json` keep the full string."""

from __future__ import annotations

import re

_RELEASE = re.compile(r"([0-9]+\.[0-9]+\.[0-9]+)-[0-9]{14}-([0-9a-f]{8,40})")


def shown(version: str) -> str:
    """`version` as chat shows it outside a command to type: a CI release version as its
    release part and short sha; anything else (dev builds, semver) as it is."""
    m = _RELEASE.fullmatch(version)
    return f"{m.group(1)} ({m.group(2)[:8]})" if m else version


_WORKING = re.compile(r"^\w+: working on it…$")


def said(out: list[str]) -> list[str]:
    """What a console user reads: every line, replies and rooms' announcements alike, without
    the `[#room] ` an announcement starts with (a deploy's result is said once, in its room),
    and without the "<command>: working on it…" a loaded machine adds to a command that is
    slow before its first news."""
    return [
        line.split("] ", 1)[1] if line.startswith("[#") else line
        for line in out
        if not _WORKING.match(line)
    ]


def replies(out: list[str]) -> list[str]:
    """The console's replies alone: no rooms' announcements (`[#room] ...`) and no
    "<command>: working on it…" (which a loaded machine adds before a slow command's news)."""
    return [line for line in out if not line.startswith("[#") and not _WORKING.match(line)]


def shown_all(text: str) -> str:
    """`text` (with no command naming a version) as chat shows it: every release short."""
    return _RELEASE.sub(lambda m: shown(m.group(0)), text)
