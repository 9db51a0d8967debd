"""SQL text written once with `?` placeholders, made fit for the engine that runs it.

Domain modules write portable SQL (the subset SQLite and PostgreSQL share: `ON CONFLICT`,
`RETURNING`, `LIMIT`) with sqlite3's `?` placeholders. psycopg wants `%s`, and then a
literal `%` must be doubled; this is the one place that knows it.
"""

from __future__ import annotations

import re
from functools import lru_cache

_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+([A-Za-z_][A-Za-z0-9_]*)", re.IGNORECASE)


@lru_cache(maxsize=512)
def for_engine(sql: str, postgres: bool) -> str:
    """`sql` for the engine's driver: unchanged for SQLite; for psycopg each `?` outside a
    quoted string or identifier becomes `%s`, and `%` becomes `%%`."""
    if not postgres:
        return sql
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        if ch == "%":
            out.append("%%")
            continue
        out.append(ch)
    return "".join(out)


@lru_cache(maxsize=512)
def inserted_table(sql: str) -> str | None:
    """The table an INSERT statement writes to, else None."""
    m = _INSERT.match(sql)
    return m.group(1).lower() if m else None
