"""Turning a chat line into a command invocation: pure, no I/O.

A line is for the bot when it starts with the prefix (`!status`), addresses the bot by
nick (`deploybot: status`, `deploybot, status`; also by the nick it has right now, such as a
fallback `deploybot_: status`), or comes in a private query (`status`).
IRC formatting codes (bold, colours, italics, ...) are stripped first, so a pasted bold
command works. Arguments are whitespace-separated, with
shell-like quotes allowed; `T\\d+` anywhere attaches a Phabricator task; `--word` is a flag.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

TASK_RE = re.compile(r"^T\d{1,9}$")
FLAG_RE = re.compile(r"^--[a-z][a-z-]{0,30}$")
CONTROL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is whitespace
# mIRC formatting: colour \x03[fg[,bg]], hex colour \x04[rrggbb[,rrggbb]], bold, reset,
# monospace, reverse, italics, strikethrough, underline
FORMAT_RE = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x02\x0f\x11\x16\x1d\x1e\x1f]"
)
MAX_LINE = 1000
MAX_ARG = 200


class ParseError(ValueError):
    """The line is for the bot but cannot be used; the message is the one-line reply."""


@dataclass(frozen=True)
class Invocation:
    name: str
    args: list[str]
    rest: str  # the raw text after the command name (for !log, !lock reasons)
    tasks: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)


def strip_formatting(line: str) -> str:
    return FORMAT_RE.sub("", line)


def addressed_text(
    line: str, prefix: str, nick: str, private: bool = False, current_nick: str = ""
) -> str | None:
    """The command part of `line` if it is meant for the bot, else None. `current_nick`: the
    nick the bot has on the network the line came from, when it differs from `nick`."""
    text = line.strip()
    if prefix and text.startswith(prefix):
        rest = text[len(prefix) :]
        return rest if rest[:1].isalpha() else None
    lowered = text.lower()
    for name in dict.fromkeys(n for n in (nick, current_nick) if n):
        for sep in (":", ","):
            head = name.lower() + sep
            if lowered.startswith(head):
                return text[len(head) :].strip()
    if private and text[:1].isalpha():
        return text  # a private query needs no prefix
    return None


def parse_line(
    line: str, prefix: str, nick: str, private: bool = False, current_nick: str = ""
) -> Invocation | None:
    """Parse a chat line; None when it is not for the bot. Raises ParseError."""
    line = strip_formatting(line)
    text = addressed_text(line, prefix, nick, private, current_nick)
    if text is None:
        return None
    if CONTROL_RE.search(line.rstrip("\r\n")):
        raise ParseError("refused: control characters are not allowed in commands")
    if len(line) > MAX_LINE:
        raise ParseError(f"refused: command longer than {MAX_LINE} characters")
    if not text:
        raise ParseError("empty command; try !help")
    name, _, rest = text.partition(" ")
    name = name.lower()
    try:
        words = shlex.split(rest)
    except ValueError:
        raise ParseError("refused: unbalanced quotes in command") from None
    for w in words:
        if len(w) > MAX_ARG:
            raise ParseError(f"refused: argument longer than {MAX_ARG} characters")
    tasks = [w for w in words if TASK_RE.match(w)]
    flags = {w[2:] for w in words if FLAG_RE.match(w)}
    args = [w for w in words if not TASK_RE.match(w) and not FLAG_RE.match(w)]
    return Invocation(name=name, args=args, rest=rest.strip(), tasks=tasks, flags=flags)
