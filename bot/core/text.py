"""How durations and free text are put into chat lines (one formatter each)."""

from __future__ import annotations


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
