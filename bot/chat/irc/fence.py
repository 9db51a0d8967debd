"""At-least-once delivery of the bot's IRC lines over a lost connection: the fence bookkeeping.

IRC never acknowledges a PRIVMSG. A line written into a connection that dies before the server
read it (the server was killed, the link dropped) is lost for everyone, although the outbox
already marked it sent. But a server handles one client's commands in order, so the PONG to
a PING of ours proves that every line written before that PING was handled. The adapter
(bot.chat.irc.adapter) records here each line it writes, sends one PING (`ping`) when unconfirmed
lines exist and no other line waits for the wire, and after a reconnect sends the unconfirmed
lines again, first and in order (`next_resend`). A line whose PONG died with the server is
shown twice: at least once, never lost. Memory is bounded (`cap` lines, oldest dropped).

A line carries the outbox keys of what it says (one pipeline, one deploy). Before lines go
again, every line whose keys a later line also says is dropped (`lost`): the room may see a
state twice, but never an older state after a newer one. A line the dead connection's server
proved it handled after all (its PONG, its echo or the ERROR answering our QUIT arrived late,
on the old socket) is not sent again (`confirmed_late`).

Pure bookkeeping, no I/O, so these rules are tested alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

CAP = 200
MARKER = " (repeated after a reconnect)"
TOKEN_PREFIX = "deploybot-fence-"


@dataclass
class Entry:
    """One line the bot wrote: `seq` is its place in the order the bot first said things."""

    seq: int
    line: str
    target: str
    written: int = 0  # its write number on the current connection
    keys: frozenset[str] = frozenset()  # outbox keys of the states it says (none: not superseded)
    connection: int = 0  # the connection it was last written on
    said: int = 0  # one text split into several lines: the parts share this (0: its own)


def target_of(line: str) -> str:
    """The target of a `PRIVMSG target :text` line."""
    parts = line.split(" ", 2)
    return parts[1] if len(parts) > 1 else ""


def repeated(line: str, prefix_len: int, max_bytes: int = 512) -> str:
    """The line as sent again: with MARKER at the end when it still fits in `max_bytes` as
    the server relays it (`:<prefix> ...\\r\\n`), else unchanged (never cut)."""
    marked = line + MARKER
    if len(marked.encode("utf-8")) + 2 + prefix_len + 2 <= max_bytes:
        return marked
    return line


def superseded_dropped(entries: list[Entry]) -> list[Entry]:
    """`entries` (in the order said) less every line all of whose keys a later line says too:
    that later line is the newer state, and it goes anyway."""
    later: set[str] = set()  # keys said by later texts
    current: tuple[int, set[str]] = (0, set())  # the text being walked, and its keys
    kept: list[Entry] = []
    for entry in reversed(entries):
        if entry.said != current[0]:
            later |= current[1]
            current = (entry.said, set(entry.keys))
        if entry.keys and entry.keys <= later:
            continue
        kept.append(entry)
    return kept[::-1]


class Fence:
    """The lines written since the server last proved it handled them, and those to resend."""

    def __init__(self, cap: int = CAP) -> None:
        self.cap = cap
        self._unconfirmed: deque[Entry] = deque()
        self._resend: list[Entry] = []  # sorted by seq
        self._seq = 0
        self._writes = 0  # lines written on this connection
        self._pings = 0
        self._outstanding: tuple[str, int, float] | None = None  # token, writes covered, when
        self._connection = 0  # counts connections; entries remember theirs
        self._lost_pings: dict[str, tuple[int, int]] = {}  # token -> (connection, writes covered)

    @property
    def unconfirmed(self) -> int:
        return len(self._unconfirmed)

    @property
    def connection(self) -> int:
        """The number of the current connection (entries written on it carry it)."""
        return self._connection

    @property
    def to_resend(self) -> int:
        return len(self._resend)

    @property
    def ping_sent_at(self) -> float | None:
        """When the PING still unanswered was sent (None: none is)."""
        return self._outstanding[2] if self._outstanding else None

    def wrote(self, line: str, keys: frozenset[str] = frozenset(), said: int = 0) -> list[str]:
        """A new line went on the wire; return the lines dropped to stay within `cap`. The
        parts of one text split into several lines pass the same `said` (never 0)."""
        self._seq += 1
        entry = Entry(self._seq, line, target_of(line), keys=keys, said=said or -self._seq)
        return self.wrote_again(entry)

    def wrote_again(self, entry: Entry) -> list[str]:
        """`entry` (from `next_resend`, or new) went on the wire of the current connection."""
        self._writes += 1
        entry.written = self._writes
        entry.connection = self._connection
        self._unconfirmed.append(entry)
        dropped: list[str] = []
        while len(self._unconfirmed) + len(self._resend) > self.cap:
            if self._resend and self._resend[0].seq < self._unconfirmed[0].seq:
                dropped.append(self._resend.pop(0).line)
            else:
                dropped.append(self._unconfirmed.popleft().line)
        return dropped

    def ping_due(self) -> bool:
        """Unconfirmed lines exist and no PING is outstanding (at most one is)."""
        return bool(self._unconfirmed) and self._outstanding is None

    def ping(self, now: float) -> str:
        """The token of a PING about to be written; its PONG confirms every line before it."""
        self._pings += 1
        token = f"{TOKEN_PREFIX}{self._pings}"
        self._outstanding = (token, self._writes, now)
        return token

    def pong(self, token: str) -> int:
        """A PONG came back; return how many lines it confirmed (0 for a foreign token)."""
        if self._outstanding is None or token != self._outstanding[0]:
            return 0
        covered = self._outstanding[1]
        self._outstanding = None
        confirmed = 0
        while self._unconfirmed and self._unconfirmed[0].written <= covered:
            self._unconfirmed.popleft()
            confirmed += 1
        return confirmed

    def echoed(self) -> int:
        """The server relayed (IRCv3 echo-message) the oldest unconfirmed line: it and every
        line before it were handled. Return how many that confirmed."""
        if not self._unconfirmed:
            return 0
        self._unconfirmed.popleft()
        return 1

    def lost(self) -> int:
        """The connection is gone: every unconfirmed line is to be sent again, in the order
        first said, less those a later line supersedes; return how many lines wait for that."""
        if self._outstanding is not None:
            token, covered, _ = self._outstanding
            self._lost_pings = {token: (self._connection, covered)}
        waiting = sorted([*self._resend, *self._unconfirmed], key=lambda e: e.seq)
        self._resend = superseded_dropped(waiting)
        self._unconfirmed.clear()
        self._outstanding = None
        self._writes = 0
        self._connection += 1
        return len(self._resend)

    def lost_ping(self, token: str) -> tuple[int, int] | None:
        """(connection, writes covered) of the PING that was out when that connection died."""
        return self._lost_pings.pop(token, None)

    def confirmed_late(self, connection: int, upto: int | None = None) -> int:
        """The server of dead `connection` proved, on its old socket, that it handled the
        lines written there (up to write number `upto`; None: all): they are not sent again.
        Return how many lines that spared."""
        before = len(self._resend)
        self._resend = [
            e
            for e in self._resend
            if e.connection != connection or (upto is not None and e.written > upto)
        ]
        return before - len(self._resend)

    def put_back(self, entry: Entry) -> None:
        """`entry` from `next_resend` could not be written after all: it waits again."""
        self._resend = sorted([*self._resend, entry], key=lambda e: e.seq)

    def next_resend(self, deliverable: Callable[[str], bool]) -> Entry | None:
        """Take the first line to send again whose target can be reached now (lines for one
        target keep their order: a later one is never deliverable before an earlier one)."""
        for index, entry in enumerate(self._resend):
            if deliverable(entry.target):
                return self._resend.pop(index)
        return None
