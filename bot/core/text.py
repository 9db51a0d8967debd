"""How durations and free text are put into chat lines (one formatter each)."""

from __future__ import annotations

import re

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
