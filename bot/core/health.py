"""Whether the store can write, as the parts that write it have found out.

A full disk, a read-only mount or an I/O error surfaces as a database error on the next
write. The outbox and the command dispatcher report such failures here (and successes, which
clear them), so `/ready` can say 503 with the reason and chat replies can take the direct,
unpersisted path instead of vanishing with the failed write.
"""

from __future__ import annotations

import errno
import time

_STORE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EACCES}
_DB_MODULES = ("sqlite3", "sqlalchemy", "psycopg")


def is_store_failure(exc: BaseException) -> bool:
    """True if `exc` (or what caused it) is the database or the disk under it failing."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        module = type(current).__module__ or ""
        if module.split(".")[0] in _DB_MODULES:
            return True
        if isinstance(current, OSError) and current.errno in _STORE_ERRNOS:
            return True
        current = current.__cause__ or current.__context__
    return False


def store_reason(exc: BaseException) -> str:
    """The database's own words (SQLAlchemy wraps them with the SQL, which is noise here)."""
    orig = getattr(exc, "orig", None)
    return str(orig if isinstance(orig, BaseException) else exc) or type(exc).__name__


class StoreHealth:
    """The last store write failure, until a write succeeds again."""

    def __init__(self) -> None:
        self.error: str | None = None
        self.since: float | None = None

    def failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.since = time.monotonic()
        self.error = store_reason(exc)

    def ok(self) -> None:
        self.error, self.since = None, None

    @property
    def writable(self) -> bool:
        return self.error is None
