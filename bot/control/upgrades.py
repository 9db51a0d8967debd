"""Upgrade scripts a deploy crosses: toolforge-deploy keeps per-version scripts next to a
component (`components/jobs-api/0.0.416-update-resources.sh`) that an operator runs by hand
when a deploy passes that version. The bot names them before it applies; it never runs them.

A script's version is the release part of a chart version (`0.0.416` for
`0.0.416-20240101120000-abcd1234`, `1.12.0` for `v1.12.0`); a deploy from A to B crosses every
script with A < version <= B (or B < version <= A going back).
"""

from __future__ import annotations

import re
from pathlib import Path

_SCRIPT_RE = re.compile(r"([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})-[A-Za-z0-9._-]+\.sh")
_RELEASE_RE = re.compile(r"v?([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})(?:[-+].*)?")


def release_part(version: str) -> tuple[int, int, int] | None:
    m = _RELEASE_RE.fullmatch(version)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def crossed(names: list[str], old: str | None, new: str) -> list[str]:
    """The script file names a deploy from `old` to `new` passes, in version order."""
    a, b = release_part(old or ""), release_part(new)
    if a is None or b is None or a == b:
        return []
    low, high = min(a, b), max(a, b)
    found = []
    for name in names:
        m = _SCRIPT_RE.fullmatch(name)
        if m is None:
            continue
        v = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if low < v <= high:
            found.append((v, name))
    return [name for _, name in sorted(found)]


def scripts_in(checkout: Path, component: str) -> list[str]:
    """The upgrade-script names in a control-repo checkout's `components/<component>/`."""
    folder = checkout / "components" / component
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and _SCRIPT_RE.fullmatch(p.name))


def describe(component: str, names: list[str]) -> str:
    """`upgrade scripts crossed (run by hand, the bot never runs them): components/c/x.sh`."""
    paths = ", ".join(f"components/{component}/{n}" for n in names)
    return f"upgrade scripts crossed (run by hand; the bot never runs them): {paths}"
