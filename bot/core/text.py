"""How durations and free text are put into chat lines (one formatter each)."""

from __future__ import annotations

import re

from bot.core.versions import shorten_releases

# mIRC formatting (colour \x03[fg[,bg]], hex colour \x04[rrggbb[,rrggbb]], bold, reset,
# monospace, reverse, italics, strikethrough, underline) and every other control character
# but newline and tab
_FORMATTING = re.compile(
    r"\x03(?:\d{1,2}(?:,\d{1,2})?)?|\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?"
    r"|[\x00-\x08\x0b-\x1f\x7f]"
)


def chat_safe(text: str) -> str:
    """Text from outside (an MR title, a commit subject, a user's words) as it may reach
    chat: without IRC formatting or control codes, so nobody paints the bot's lines."""
    return _FORMATTING.sub("", text)


def format_duration(seconds: float) -> str:
    """A measured duration: `45s`, `7m25s`, `1h02m`."""
    minutes, secs = divmod(max(int(seconds), 0), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_age(seconds: float) -> str:
    """How long ago, coarse: `45s`, `12m`, `5h`, `3d`."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def one_line(text: str, limit: int = 160) -> str:
    """Whitespace folded to single spaces, cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def duration_seconds(text: str) -> float:
    """`15m`, `90s`, `1h`, `30d`, `900` -> seconds; ValueError for anything else."""
    m = re.fullmatch(r"([0-9]{1,6})([smhd]?)", text.strip())
    if m is None or int(m.group(1)) == 0:
        raise ValueError(f"expected a duration like 15m, 90s, 1h or 30d, not {text[:40]!r}")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def format_bytes(n: int) -> str:
    """`512 B`, `1.5 KiB`, `23.4 MiB`, `1.2 GiB`."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


LINE_BYTES = 400  # a chat line with its `PRIVMSG <room> :` prefix: one IRC message, with room
# to spare for the sender mask the server adds (512 in all)
_URL = re.compile(r"https?://\S+")
_CUT = "…"


def line_budget(room: str) -> int:
    """Bytes a line's text may take in `room` (LINE_BYTES less the `PRIVMSG <room> :`)."""
    return LINE_BYTES - len(f"PRIVMSG {room} :".encode())


def command_spans(text: str, prefix: str) -> list[tuple[int, int]]:
    """Where `text` names a command to type (`!apply builds-api tools`) or a URL: spans a
    chat line keeps as they are."""
    if not prefix:
        return [m.span() for m in _URL.finditer(text)]
    command = re.compile(r"(?<!\S)" + re.escape(prefix) + r"[a-z][a-z-]*(?: +[^\s·;,()|]+)*")
    return [m.span() for m in command.finditer(text)] + [m.span() for m in _URL.finditer(text)]


def cut_bytes(text: str, limit: int) -> str:
    """`text` cut to at most `limit` UTF-8 bytes on a character boundary."""
    return text.encode()[: max(limit, 0)].decode("utf-8", "ignore")


def fit_line(text: str, budget: int, keep_from: int | None = None) -> str:
    """`text` in at most `budget` UTF-8 bytes: cut in the middle with an ellipsis when too
    long, keeping its end from `keep_from` on (the step a reader needs, e.g. `next: !apply
    …`) when that end takes at most half of the budget, else keeping the start."""
    if len(text.encode()) <= budget:
        return text
    last = text.rfind(" · ")  # else its last part (a log URL), with its separator
    for at in (keep_from, last if last > 0 else None):
        tail = text[at:] if at else ""
        mark = f" {_CUT}" + ("" if tail.startswith(" ") else " ")
        if tail and len(tail.encode()) + len(mark.encode()) <= budget // 2:
            head = cut_bytes(text[:at], budget - len(tail.encode()) - len(mark.encode()))
            return head.rstrip() + mark + tail
    return cut_bytes(text, budget - len(_CUT.encode())).rstrip() + _CUT


def _step_at(text: str, spans: list[tuple[int, int]], prefix: str) -> int | None:
    """Where a line's closing step starts: its last `next: `, else the clause (after " · "
    or "; ") holding its last command to type."""
    at = text.rfind("next: ")
    if at > 0:
        return at
    commands = [a for a, _ in spans if prefix and text.startswith(prefix, a)]
    if not commands:
        return None
    last = commands[-1]
    clause = max(text.rfind(" · ", 0, last) + 3, text.rfind("; ", 0, last) + 2)
    return clause if clause > 2 else last


def chat_line(text: str, room: str, prefix: str) -> str:
    """A line as it goes to chat: versions shown short (`0.0.134 (43712340)`, but typed in
    full inside a command to type), at most one IRC message, cut in the middle keeping its
    closing step. The only place a line is shaped (the outbox calls it for every line);
    the SAL, the web pages and `--json` keep full versions."""
    text = shorten_releases(text, command_spans(text, prefix))
    if len(f"PRIVMSG {room} :{text}".encode()) <= LINE_BYTES:
        return text
    return fit_line(text, line_budget(room), _step_at(text, command_spans(text, prefix), prefix))
