"""IRC wire format: parse lines with IRCv3 tags, build outgoing lines, split long text safely.

Pure functions only (no I/O) so the rules that keep the bot from being injected or
kicked for over-long lines can be tested exhaustively.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE_BYTES = 512
DEFAULT_PREFIX_LEN = 100  # budget for "nick!user@host" when the real one is not known yet

_TAG_ESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}
# C0 controls and DEL, except the IRC formatting codes (bold, colour, reset, monospace,
# reverse, italics, strikethrough, underline). \x01 (CTCP) is dropped on purpose.
_KEEP_CONTROLS = "\x02\x03\x0f\x11\x16\x1d\x1e\x1f"
_CONTROL_RE = re.compile(
    "[" + "".join(f"\\x{c:02x}" for c in range(32) if chr(c) not in _KEEP_CONTROLS) + "\\x7f]"
)
_NEWLINE_RE = re.compile(r"[ \t]*(?:\r\n|\r|\n)[ \t]*")
_BAD_TARGET_RE = re.compile(r"[\s,\x00:]")


@dataclass(frozen=True)
class Line:
    """One parsed IRC line."""

    command: str
    params: tuple[str, ...] = ()
    source: str | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def nick(self) -> str | None:
        """The nick (or server name) part of the source, if any."""
        if self.source is None:
            return None
        return self.source.split("!", 1)[0].split("@", 1)[0]

    def param(self, index: int, default: str = "") -> str:
        return self.params[index] if index < len(self.params) else default


def unescape_tag_value(value: str) -> str:
    """Undo IRCv3 tag value escaping (`\\:` -> `;`, `\\s` -> space, ...)."""
    out: list[str] = []
    chars = iter(value)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        out.append(_TAG_ESCAPES.get(nxt, nxt))
    return "".join(out)


def parse_line(raw: str) -> Line:
    """Parse one line (without or with its trailing CR/LF). Raises ValueError if empty."""
    rest = raw.rstrip("\r\n")
    tags: dict[str, str] = {}
    if rest.startswith("@"):
        tag_part, _, rest = rest[1:].partition(" ")
        for item in tag_part.split(";"):
            if item:
                key, _, value = item.partition("=")
                tags[key] = unescape_tag_value(value)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        rest = rest.lstrip(" ")
    trailing: str | None = None
    if " :" in rest:
        rest, trailing = rest.split(" :", 1)
    elif rest.startswith(":"):
        rest, trailing = "", rest[1:]
    words = rest.split()
    if not words:
        raise ValueError("IRC line without a command")
    params = words[1:] + ([trailing] if trailing is not None else [])
    return Line(command=words[0].upper(), params=tuple(params), source=source, tags=tags)


def format_line(command: str, *params: str) -> str:
    """Build an outgoing line (without CR/LF); the last parameter becomes trailing if needed.

    Raises ValueError for anything that would break the line apart (CR, LF, NUL) or for a
    middle parameter that contains a space or starts with ':'.
    """
    parts = [command]
    for i, param in enumerate(params):
        if any(c in param for c in "\r\n\x00"):
            raise ValueError("IRC parameter contains CR, LF or NUL")
        last = i == len(params) - 1
        if last and (not param or " " in param or param.startswith(":")):
            parts.append(":" + param)
        elif " " in param or param.startswith(":") or not param:
            raise ValueError(f"invalid middle IRC parameter {param!r}")
        else:
            parts.append(param)
    return " ".join(parts)


def clean_text(text: str) -> str:
    """Make text safe as one IRC trailing parameter.

    Line breaks become a single space; NUL, CTCP \\x01 and other control characters are
    dropped (IRC formatting codes are kept); lone surrogates become U+FFFD.
    """
    text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    text = _NEWLINE_RE.sub(" ", text).replace("\t", " ")
    return _CONTROL_RE.sub("", text)


def validate_target(target: str) -> str:
    """Return target if it is a usable PRIVMSG target (channel or nick), else ValueError."""
    if not target or _BAD_TARGET_RE.search(target) or any(ord(c) < 32 for c in target):
        raise ValueError(f"invalid IRC target {target!r}")
    return target


def _cut(text: str, budget: int) -> int:
    """Largest index i such that text[:i] fits in budget bytes (character boundary)."""
    used = 0
    for i, ch in enumerate(text):
        used += len(ch.encode("utf-8"))
        if used > budget:
            return i
    return len(text)


def split_text(
    target: str,
    text: str,
    max_bytes: int = MAX_LINE_BYTES,
    prefix_len: int = DEFAULT_PREFIX_LEN,
) -> list[str]:
    """Split text into `PRIVMSG target :chunk` lines (without CR/LF).

    Each line, as the server relays it to others (`:<prefix> PRIVMSG target :chunk\\r\\n`
    with a source of prefix_len bytes), fits in max_bytes. Splits on word boundaries
    when possible, else on UTF-8 character boundaries. Empty text gives no lines.
    """
    validate_target(target)
    head = f"PRIVMSG {target} :"
    budget = max_bytes - len(b"\r\n") - (1 + prefix_len + 1) - len(head.encode("utf-8"))
    if budget < 4:  # must fit at least one UTF-8 character
        raise ValueError("target/prefix too long to send any text")
    rest = clean_text(text).rstrip(" ")
    if not rest.strip():
        return []
    lines: list[str] = []
    while rest:
        if len(rest.encode("utf-8")) <= budget:
            chunk, rest = rest, ""
        else:
            cut = _cut(rest, budget)
            space = rest.rfind(" ", 0, cut + 1)
            if space > 0 and rest[:space].strip():
                chunk, rest = rest[:space].rstrip(" "), rest[space:].lstrip(" ")
            else:
                chunk, rest = rest[:cut], rest[cut:]
                if not rest.strip(" "):
                    rest = ""
        if chunk.strip(" "):
            lines.append(head + chunk)
    return lines


def irc_lower(name: str, casemapping: str = "rfc1459") -> str:
    """Case-fold a nick or channel name the way the server compares them (ASCII only)."""
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    lower = "abcdefghijklmnopqrstuvwxyz"
    if casemapping != "ascii":
        upper, lower = upper + "[]\\", lower + "{}|"
        if casemapping != "strict-rfc1459":
            upper, lower = upper + "~", lower + "^"
    return name.translate(str.maketrans(upper, lower))


def account_name(value: str | None) -> str | None:
    """Normalise an account from account-tag/extended-join/ACCOUNT/WHOX; None = not logged in."""
    return None if value in (None, "", "*", "0") else value


@dataclass
class _Member:
    account: str | None = None
    channels: set[str] = field(default_factory=set)


class AccountTracker:
    """Which services account each nick sharing a channel with us is logged in as.

    Fed from JOIN (extended-join), NAMES, WHOX, ACCOUNT, NICK, PART, KICK and QUIT. A nick
    that no longer shares a channel is forgotten: we would not hear about its changes.
    """

    def __init__(self, casemapping: str = "rfc1459") -> None:
        self.casemapping = casemapping
        self._members: dict[str, _Member] = {}

    def _key(self, nick: str) -> str:
        return irc_lower(nick, self.casemapping)

    def joined(self, nick: str, channel: str) -> None:
        member = self._members.setdefault(self._key(nick), _Member())
        member.channels.add(irc_lower(channel, self.casemapping))

    def set_account(self, nick: str, account: str | None) -> None:
        """Record the account (None: logged out) of a tracked nick; untracked nicks are ignored."""
        member = self._members.get(self._key(nick))
        if member is not None:
            member.account = account_name(account)

    def account(self, nick: str) -> str | None:
        member = self._members.get(self._key(nick))
        return member.account if member else None

    def parted(self, nick: str, channel: str | None) -> None:
        """nick left channel (None: quit the network)."""
        key = self._key(nick)
        member = self._members.get(key)
        if member is None:
            return
        if channel is None:
            member.channels.clear()
        else:
            member.channels.discard(irc_lower(channel, self.casemapping))
        if not member.channels:
            del self._members[key]

    def renamed(self, old: str, new: str) -> None:
        member = self._members.pop(self._key(old), None)
        if member is not None:
            self._members[self._key(new)] = member

    def we_left(self, channel: str) -> None:
        folded = irc_lower(channel, self.casemapping)
        for key in [k for k, m in self._members.items() if folded in m.channels]:
            self.parted(key, channel)
