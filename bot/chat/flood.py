"""Flood-control math: a per-room token bucket and the packing of a backlog into lines.

Pure functions over plain values; the announcer (outbox.py) does the I/O. Coalescing of
updates for the same pipeline/deploy happens when they are queued (outbox.enqueue); here a
backlog of several items becomes one summary line, so a burst of many pipelines costs a few
lines while every item's latest text (final states included) is still delivered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SEPARATOR = " | "


class TokenBucket:
    """`burst` lines at once, then one line every `1/per_second` seconds."""

    def __init__(self, burst: int, per_second: float, now: float):
        self.burst = burst
        self.per_second = per_second
        self.tokens = float(burst)
        self.updated = now

    def _refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(float(self.burst), self.tokens + elapsed * self.per_second)
        self.updated = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def refund(self) -> None:
        self.tokens = min(float(self.burst), self.tokens + 1.0)

    def wait_time(self, now: float) -> float:
        """Seconds until a line may be sent."""
        self._refill(now)
        if self.tokens >= 1.0:
            return 0.0
        return (1.0 - self.tokens) / self.per_second


def thing_of(key: str | None) -> str | None:
    """The action an outbox key belongs to: `deploy:7#start` and `deploy:7` are steps of
    `deploy:7`. Lines of one action keep their order, even in a packed line."""
    return key.split("#", 1)[0] if key else None


_FAILING_RE = re.compile(r"\b(failed|failure|canceled|cancelled|error|ALERT|refused)\b", re.I)


@dataclass(frozen=True)
class Pending:
    id: int
    text: str
    priority: int = 0
    short: str | None = None  # the form used when packed with others, e.g. "#41 success 3m"
    thing: str | None = None  # the action this line is a step of (`deploy:7`), see `thing_of`

    @property
    def packed(self) -> str:
        return self.short or self.text

    @property
    def failing(self) -> bool:
        """A failure, an alert or a cancellation: what people scan a summary line for."""
        return _FAILING_RE.search(self.packed) is not None


def plan_line(pending: list[Pending], max_bytes: int = 400) -> tuple[str, list[int]]:
    """The next line to send for one room and the ids it delivers.

    Replies (priority > 0) go out alone and first. A lone announcement goes out in full.
    Announcements waiting together are packed into one line, each in its short form when it
    has one, joined by " | " up to `max_bytes`, failures first (then oldest first; the steps
    of one action stay together, in the order they were queued, see `thing_of`); an item
    too long to share a line goes alone (the adapter splits it at the protocol limit).
    Identical items are said once (their ids are all delivered by the line).
    """
    if not pending:
        raise ValueError("nothing pending")
    ordered = sorted(pending, key=lambda p: (-p.priority, p.id))
    first = ordered[0]
    if first.priority > 0 or len(ordered) == 1 or ordered[1].priority > 0:
        return first.text, [first.id]
    failing = {p.thing for p in ordered if p.thing is not None and p.failing}
    first_of: dict[str | None, int] = {}
    for p in ordered:
        first_of.setdefault(p.thing, p.id)

    def rank(p: Pending) -> tuple[bool, int, int]:
        if p.thing is None:
            return (not p.failing, p.id, p.id)
        return (p.thing not in failing, first_of[p.thing], p.id)

    ordered = sorted(ordered, key=rank)
    first = ordered[0]
    text, ids = first.packed, [first.id]
    size = len(text.encode())
    said = {first.packed}
    for item in ordered[1:]:
        if item.packed in said:  # identical items (a final doubled after a leader kill): once
            ids.append(item.id)
            continue
        extra = len(SEPARATOR.encode()) + len(item.packed.encode())
        if size + extra > max_bytes:
            break
        text += SEPARATOR + item.packed
        size += extra
        ids.append(item.id)
        said.add(item.packed)
    if len(ids) == 1:
        return first.text, ids
    return text, ids
