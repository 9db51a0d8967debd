"""Opening a store safely: integrity checks, then the Alembic migrations up to head.

Refused, each with one line naming the store: a zero-length or corrupt SQLite file (an
empty store is created only where no file existed), a schema newer than this code, and a
database that holds tables but no deploybot schema version. A SQLite file from before
Alembic (`PRAGMA user_version` 1..7) is brought to version 7 and stamped `r0001`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from bot.core.errors import StoreError
from bot.store.migrations.legacy import LEGACY, LEGACY_VERSION

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "r0001"
SQLITE_HEADER = b"SQLite format 3\x00"

logging.getLogger("alembic").setLevel(logging.WARNING)


def _store_error(message: str) -> Exception:
    return StoreError(message)


def check_sqlite_file(path: Path) -> None:
    """Refuse a zero-length file or one that is not SQLite; create the directory if new."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise _store_error(f"store {path}: cannot read: {exc.strerror}") from None
    if not header:
        raise _store_error(
            f"store {path} is empty (0 bytes), not a deploybot store: restore it from a backup,"
            " or remove it to start with an empty store"
        )
    if header != SQLITE_HEADER:
        raise _store_error(f"store {path} is not a SQLite database: restore it from a backup")


def alembic_config(conn: Connection) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
    return str(row[0]) if row else None


MIGRATION_LOCK = 74152026  # PostgreSQL: replicas starting together migrate one at a time


def upgrade(conn: Connection, where: str) -> None:
    """Check the store on `conn` and migrate it to head (committed)."""
    if conn.dialect.name != "postgresql":
        return _upgrade(conn, where)
    conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK})")
    conn.commit()
    try:
        _upgrade(conn, where)
    finally:
        with contextlib.suppress(sa.exc.DBAPIError):  # a lost connection lost the lock too
            if conn.in_transaction():
                conn.rollback()
            conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK})")
            conn.commit()


def _upgrade(conn: Connection, where: str) -> None:
    conn.info["read"] = True
    try:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            _quick_check(conn, where)
        revision = current_revision(conn)
        script = ScriptDirectory(str(MIGRATIONS))
        legacy = 0
        if revision is not None:
            try:
                known = script.get_revision(revision) is not None
            except Exception:  # alembic raises for an unknown id
                known = False
            if not known:
                raise _store_error(
                    f"store {where} has schema revision {revision}, newer than this deploybot"
                    f" (knows up to {script.get_current_head()}): run a newer deploybot"
                )
        else:
            legacy = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0) if sqlite else 0
            if legacy > LEGACY_VERSION:
                raise _store_error(
                    f"store {where} has schema version {legacy}, newer than this deploybot"
                )
            tables = [t for t in sa.inspect(conn).get_table_names() if not t.startswith("sqlite_")]
            if legacy == 0 and tables:
                raise _store_error(
                    f"store {where} holds tables ({', '.join(sorted(tables)[:3])}, ...) but no"
                    " deploybot schema: point store.url at an empty database"
                )
        conn.commit()
    except sa.exc.DatabaseError as exc:
        conn.rollback()
        raise _store_error(f"store {where} is corrupt or unreadable: {_first_line(exc)}") from None
    finally:
        conn.info["read"] = False
    cfg = alembic_config(conn)
    if legacy:
        with conn.begin():
            for script_text in LEGACY[legacy:]:
                for statement in script_text.split(";"):
                    if statement.strip():
                        conn.exec_driver_sql(statement)
            conn.exec_driver_sql(f"PRAGMA user_version={LEGACY_VERSION}")
        command.stamp(cfg, BASELINE)
    command.upgrade(cfg, "head")
    if conn.in_transaction():
        conn.commit()


def _quick_check(conn: Connection, where: str) -> None:
    rows = conn.exec_driver_sql("PRAGMA quick_check").fetchall()
    verdict = [str(r[0]) for r in rows]
    if verdict != ["ok"]:
        raise _store_error(
            f"store {where} is corrupt (quick_check: {verdict[0] if verdict else 'no answer'}):"
            " restore it from a backup"
        )


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
