"""What `/diffs/<id>` shows besides the pin diff: which versions move, the release commits
the change brings, and the helmfile diff of a deploy that ran it.

The stored diff is the unified diff `!diff` saved; its `-key: old` / `+key: new` lines and
`components/<c>/values/<env>` paths say what moves. Plain functions over plain values.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.core.versions import Tag, parse_version

_FILE_RE = re.compile(r"^\+\+\+ b/components/(?P<component>[^/]+)/values/(?P<env>[^./]+)")
_PIN_RE = re.compile(r"^(?P<sign>[+-])\s*[\w.]+:\s*[\"']?(?P<version>0\.0\.\d+-[\w.-]+?)[\"']?\s*$")


@dataclass(frozen=True)
class Move:
    component: str
    env: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class DiffLine:
    kind: str  # add | del | hunk | file | ctx
    text: str


def lines_of(diff: str) -> list[DiffLine]:
    out = []
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append(DiffLine(kind, line))
    return out


def moves_of(diff: str) -> list[Move]:
    """Each environment's pin change in the diff (component, env, old, new)."""
    moves: list[Move] = []
    component = env = None
    old: str | None = None
    for line in diff.splitlines():
        f = _FILE_RE.match(line)
        if f:
            component, env, old = f["component"], f["env"], None
            continue
        m = _PIN_RE.match(line)
        if m and component and env:
            if m["sign"] == "-":
                old = m["version"]
            else:
                moves.append(Move(component, env, old, m["version"]))
                old = None
    return moves


def brought(tags: list[Tag], old: str | None, new: str) -> list[Tag]:
    """Release tags after `old` up to `new`, newest first."""
    lo = parse_version(old or "")
    hi = parse_version(new)
    if hi is None:
        return []
    out = []
    for t in tags:
        v = parse_version(t.name)
        if v is None or not v.is_release or v.sort_key > hi.sort_key:
            continue
        if lo is not None and v.sort_key <= lo.sort_key:
            continue
        out.append((v.sort_key, t))
    return [t for _, t in sorted(out, key=lambda p: p[0], reverse=True)][:50]


def diff_section(log: str) -> str | None:
    """The output of the deploy's diff step, from its log (None if no diff ran)."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("$ ") and " diff" in line:
            out = []
            for rest in lines[i + 1 :]:
                if rest.startswith("[deploybot] ") or rest.startswith("$ "):
                    break
                out.append(rest)
            return "\n".join(out)
    return None
