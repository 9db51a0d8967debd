"""A budget for repeated log messages, so an attacker cannot fill the disk with logs.

Records are grouped by kind (logger name and message template); each kind may log `burst`
records per `per` seconds. What goes over is dropped and counted, and the next record of
that kind that is let through says how many were suppressed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class LogBudget(logging.Filter):
    def __init__(
        self,
        burst: int = 20,
        per: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.per = per
        self.clock = clock
        self.max_kinds = max_kinds
        self._kinds: dict[tuple[str, str], tuple[float, int, int]] = {}  # start, used, dropped

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = self.clock()
        start, used, dropped = self._kinds.get(key, (now, 0, 0))
        if now - start >= self.per:
            start, used = now, 0
        if used >= self.burst:
            self._kinds[key] = (start, used, dropped + 1)
            return False
        if len(self._kinds) >= self.max_kinds and key not in self._kinds:
            self._kinds.clear()  # many distinct kinds: forget old windows, stay bounded
        self._kinds[key] = (start, used + 1, 0)
        if dropped:
            record.msg = f"{record.getMessage()} [{dropped} similar messages suppressed]"
            record.args = None
        return True
