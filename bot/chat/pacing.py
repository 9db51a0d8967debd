"""The one line budget of an IRC connection, chosen to fit the server it talks to.

Servers throttle what one client sends, each in its own way, and lines the bot sends faster
than the server reads them wait in the server's buffer: a reply the bot puts ahead of its own
announcements then still waits behind them there. So the adapter paces every line it writes
(split parts and JOIN/WHO/PONG included) with one token bucket per connection, at the rate the
server processes without delay. `chat.irc.flood` sets it; without it the bucket is chosen from
the server software named in the registration numeric 004 (RPL_MYINFO, e.g. "ngircd-26.1"):

- ngircd 26 (src/ngircd/conn.c): a client's read buffer is handled at most 3 commands at a time
  (MAX_COMMANDS), and within one wall-clock second the reads after the first may bring fewer
  than 256 bytes (maxbps = COMMAND_LEN / 2); past either limit it stops reading the connection
  until the next second. One line every 0.5 s (burst 1, 2 lines/s) puts at most 2 reads in any
  second, so no line of any length is held.
- InspIRCd 3's default connect class (threshold 10, commandrate 1000, fakelag on: users.cpp,
  usermanager.cpp): each PRIVMSG adds 1 s of penalty, which drains at 1 s per second; lines
  beyond 10 s of penalty wait in the RecvQ (killed past 8 KB). Burst 8, then 1 line/s leaves 2
  for JOIN (penalty 2) and WHO.
- anything else: burst 4, then 1 line/s (what common servers tolerate without a kill).

Pure values and one small class; the adapter (irc.py) does the waiting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.chat.flood import TokenBucket


@dataclass(frozen=True)
class Budget:
    """Lines the connection may send at once, then per second, and why this budget."""

    burst: int
    per_second: float
    why: str

    def describe(self) -> str:
        lines = "line" if self.per_second == 1 else "lines"
        return f"burst {self.burst}, then {self.per_second:g} {lines}/s ({self.why})"


NGIRCD = (1, 2.0)
INSPIRCD = (8, 1.0)
UNKNOWN = (4, 1.0)
_SOFTWARE = (
    (re.compile(r"^ngircd-", re.I), NGIRCD, "fits ngircd's 3 commands and 256 bytes a second"),
    (re.compile(r"^inspircd-", re.I), INSPIRCD, "fits InspIRCd's default connect class"),
)


def budget_for(software: str | None, configured: tuple[int, float] | None) -> Budget:
    """The budget for a server running `software` (004's version, e.g. "ngircd-26.1");
    an explicit `chat.irc.flood` always wins."""
    if configured is not None:
        return Budget(configured[0], configured[1], "chat.irc.flood")
    if software:
        for pattern, (burst, rate), why in _SOFTWARE:
            if pattern.search(software):
                return Budget(burst, rate, f"{software}: {why}")
        return Budget(*UNKNOWN, f"{software}: unknown server, conservative default")
    return Budget(*UNKNOWN, "server software not known yet, conservative default")


class WirePacer:
    """The token bucket of one connection, and which budget it runs on.

    `wait_time` says when the next line may go; `take` spends a token for a line about to be
    written; `charge` spends one for a line that must go now (PONG, JOIN) even into debt,
    which later lines then wait out. `learn` switches to the budget for the server's software.
    """

    def __init__(self, configured: tuple[int, float] | None, now: float):
        self.configured = configured
        self.budget = budget_for(None, configured)
        self._bucket = TokenBucket(self.budget.burst, self.budget.per_second, now)
        self._told: Budget | None = None

    def new_connection(self, now: float) -> None:
        """A fresh connection: the server has seen nothing from it yet."""
        self._bucket = TokenBucket(self.budget.burst, self.budget.per_second, now)

    def wait_time(self, now: float) -> float:
        return self._bucket.wait_time(now)

    def take(self, now: float) -> bool:
        return self._bucket.take(now)

    def charge(self, now: float) -> None:
        self._bucket.wait_time(now)  # refill first
        self._bucket.tokens = max(-float(self.budget.burst), self._bucket.tokens - 1.0)

    def learn(self, software: str, now: float) -> str | None:
        """Pace by the budget for the server's software (004's version, "ngircd-26.1");
        return its description when it was not announced before (to log), else None."""
        budget = budget_for(software, self.configured)
        if budget != self.budget:  # keep what this connection already spent
            self._bucket.wait_time(now)
            spent = self.budget.burst - self._bucket.tokens
            self.budget = budget
            self._bucket = TokenBucket(budget.burst, budget.per_second, now)
            self._bucket.tokens = max(-float(budget.burst), budget.burst - spent)
        if budget == self._told:
            return None
        self._told = budget
        return budget.describe()
