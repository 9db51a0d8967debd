"""The store: the one place state that matters lives, so a `kill -9` loses nothing.

SQLite (the embedded default, one file) or PostgreSQL (shared by replicas), with one Alembic
migration history for both (`bot/store/migrations/`). SQLAlchemy 2 Core makes the engines and
runs the migrations and PostgreSQL's statements; SQLite's statements go straight to the
sqlite3 connection under it (its Python layer cost ten times what SQLite itself did for the
small statements of a webhook, and sqlite3 already speaks the `?` the domain modules write).
Domain modules (sal, outbox, locks, ...) own their SQL, written once with `?` placeholders;
`sqltext.for_engine` translates them for PostgreSQL in this one place.

One connection, used from one dedicated thread (so the event loop never blocks on disk and
no two statements interleave), which takes urgent calls first (`transaction(fn,
urgent=True)`: a webhook's group commit, whose 200 waits for it, goes before the event
worker's and the outbox's bookkeeping queued earlier; calls of one kind keep their order). SQLite runs in WAL mode with synchronous=FULL (every commit
is fsynced: NORMAL survives a `kill -9` but not a power cut or an OS failure, which then
loses what a webhook's 200 acknowledged) and takes the write lock at BEGIN (IMMEDIATE);
`checkpoint()` truncates the WAL (the app calls it periodically, so it stays small).
PostgreSQL keeps its default `synchronous_commit=on`. Either way a transaction is committed
and on disk before the caller hears back — unless the caller says it need not be
(`transaction(fn, durable=False)`: bookkeeping that may be redone, such as marking a webhook
event handled): it is then committed without waiting for the disk (SQLite `synchronous=NORMAL`
for that commit, PostgreSQL `synchronous_commit=off`); a process crash still loses nothing, a
power cut may lose it (never anything committed before it), and the next durable commit
flushes it too. Opening checks the store first: a zero-length or corrupt SQLite file, or a schema
newer than this code, is refused with one line naming the store; an empty store is created
only where none existed.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url

from bot.config.model import Config, read_secret
from bot.core.errors import StoreError
from bot.store import migrate
from bot.store.sqltext import for_engine, inserted_table

T = TypeVar("T")

# PostgreSQL: tables whose `id` a sequence generates (an INSERT into one reports the new id
# as `lastrowid`, like sqlite3 does for every table); read from the catalog at open
_ID_TABLES_SQL = (
    "SELECT table_name FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND column_name = 'id' AND (column_default LIKE 'nextval(%%' OR is_identity = 'YES')"
)

__all__ = [
    "Row",
    "Store",
    "StoreClosed",
    "StoreConn",
    "StoreError",
    "sqlite_url",
    "store_from_config",
]


class StoreClosed(RuntimeError):
    """The store was closed (shutdown in progress)."""


class Row(tuple[Any, ...]):
    """A result row, indexable by position and by column name (like `sqlite3.Row`)."""

    _index: dict[str, int]

    def __new__(cls, values: Sequence[Any], index: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._index = index
        return row

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._index)


class Cursor:
    """What `StoreConn.execute` returns: `rowcount`, `lastrowid`, and the rows."""

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None):
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Row]:
        return list(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


class StoreConn:
    """The connection a `transaction` function is given: `execute(sql, params)` with `?`."""

    postgres = False

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        raise NotImplementedError

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> Cursor:
        """One statement for each parameter tuple (no rows, no ids)."""
        raise NotImplementedError


class _SqliteConn(StoreConn):
    """SQLite: statements straight on the sqlite3 connection (SQLAlchemy's layer cost ten
    times the statement itself on the webhook path; it adds nothing sqlite3 lacks here)."""

    def __init__(self, raw: sqlite3.Connection):
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        cur = self.raw.execute(sql, params)
        rows: list[Row] = []
        if cur.description is not None:
            index = {d[0]: i for i, d in enumerate(cur.description)}
            rows = [Row(r, index) for r in cur.fetchall()]
        rowcount = cur.rowcount
        lastrowid = cur.lastrowid if rowcount > 0 and inserted_table(sql) else None
        return Cursor(rows, rowcount, lastrowid)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> Cursor:
        params = [tuple(p) for p in seq_of_params]
        if not params:
            return Cursor([], 0, None)
        return Cursor([], self.raw.executemany(sql, params).rowcount, None)


class _PostgresConn(StoreConn):
    """PostgreSQL, through SQLAlchemy's connection (psycopg, `?` made `%s`)."""

    postgres = True

    def __init__(self, conn: Connection, id_tables: frozenset[str] = frozenset()):
        self.sa = conn
        self.id_tables = id_tables

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        want_id = inserted_table(sql) in self.id_tables and " returning " not in sql.lower()
        if want_id:
            sql += " RETURNING id"
        result = self.sa.exec_driver_sql(for_engine(sql, True), tuple(params))
        rowcount = result.rowcount
        rows: list[Row] = []
        if result.returns_rows:
            index = {name: i for i, name in enumerate(result.keys())}
            rows = [Row(tuple(r), index) for r in result.fetchall()]
        lastrowid: int | None = None
        if want_id:
            lastrowid = int(rows[0][0]) if rows else None
            rowcount, rows = len(rows), []
        return Cursor(rows, rowcount, lastrowid)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> Cursor:
        params = [tuple(p) for p in seq_of_params]
        if not params:
            return Cursor([], 0, None)
        result = self.sa.exec_driver_sql(for_engine(sql, True), params)
        return Cursor([], result.rowcount, None)


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def store_from_config(config: Config) -> Store:
    """The store `config.store` names (default: SQLite in `bot.state_dir`)."""
    password = read_secret(config.store.password_env, config.store.password_file)
    return Store(config.store_url, password=password)


_Call = tuple[int, int, Callable[[], Any] | None, "Future[Any] | None"]


class _StoreThread:
    """The one thread that runs the store's calls: urgent ones first, each kind in order.
    The thread ends after `shutdown`, or once this object is gone (a store never closed)."""

    URGENT, NORMAL, STOP = 0, 1, 2

    def __init__(self) -> None:
        self._queue: queue.PriorityQueue[_Call] = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread = threading.Thread(
            target=_serve, args=(self._queue,), name="store", daemon=True
        )
        self._thread.start()
        weakref.finalize(self, self._queue.put, (self.STOP, -1, None, None))

    def submit(self, fn: Callable[..., T], *args: Any, urgent: bool = False) -> Future[T]:
        done: Future[T] = Future()
        rank = self.URGENT if urgent else self.NORMAL
        self._queue.put((rank, next(self._order), functools.partial(fn, *args), done))
        return done

    def shutdown(self, wait: bool = True) -> None:
        """Stop after every call queued so far has run."""
        self._queue.put((self.STOP, next(self._order), None, None))
        if wait:
            self._thread.join()


def _serve(calls: queue.PriorityQueue[_Call]) -> None:
    while _run_one(*calls.get()[2:]):
        pass


def _run_one(call: Callable[[], Any] | None, done: Future[Any] | None) -> bool:
    """Run one call (its frame, and what the call holds, ends with it); False at the end."""
    if call is None or done is None:
        return False
    if done.set_running_or_notify_cancel():  # else its caller was cancelled before it started
        try:
            done.set_result(call())
        except BaseException as exc:  # handed to the caller, as an executor does
            done.set_exception(exc)
    return True


class Store:
    """Async facade over one connection to SQLite or PostgreSQL."""

    def __init__(self, target: Path | str, *, password: str | None = None):
        url = make_url(sqlite_url(target) if isinstance(target, Path) else target)
        if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
            url = url.set(drivername="postgresql+psycopg")
            if password:
                url = url.set(password=password)
        elif url.drivername != "sqlite":
            raise StoreError(f"store url {target}: only sqlite:/// and postgresql:// are supported")
        self.url: URL = url
        self.path: Path | None = Path(url.database or "") if url.drivername == "sqlite" else None
        self._executor: _StoreThread | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._raw: sqlite3.Connection | None = None  # SQLite: the connection under _conn
        self._id_tables: frozenset[str] = frozenset()

    @property
    def postgres(self) -> bool:
        return self.path is None

    def describe(self) -> str:
        """Where the store is, without its password."""
        if self.path is not None:
            return str(self.path)
        return self.url.set(drivername="postgresql").render_as_string(hide_password=True)

    def engine(self) -> Engine:
        """A new engine on this store's database (its own connections, e.g. the lease)."""
        if self.path is not None:
            engine = sa.create_engine(self.url, poolclass=sa.pool.StaticPool)
            sa.event.listen(engine, "connect", _sqlite_connect)
            sa.event.listen(engine, "begin", _sqlite_begin)
            return engine
        return sa.create_engine(
            self.url,
            poolclass=sa.pool.StaticPool,
            connect_args={"connect_timeout": 5, "application_name": "deploybot"},
        )

    async def open(self) -> None:
        self._executor = _StoreThread()
        try:
            await self._call(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open_sync(self) -> None:
        if self.path is not None:
            migrate.check_sqlite_file(self.path)
        engine = self.engine()
        try:
            conn = engine.connect()
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            if self.path is not None:  # the file is there (checked above) but SQLite refuses it
                raise StoreError(
                    f"store {self.path} is corrupt or unreadable ({_first_line(exc)}):"
                    " restore it from a backup"
                ) from None
            raise StoreError(
                f"store {self.describe()}: cannot connect: {_first_line(exc)}"
            ) from None
        try:
            migrate.upgrade(conn, self.describe())
            if self.postgres:
                with conn.begin():
                    rows = conn.exec_driver_sql(_ID_TABLES_SQL).fetchall()
                self._id_tables = frozenset(str(r[0]) for r in rows)
        except BaseException:
            conn.close()
            engine.dispose()
            raise
        self._engine, self._conn = engine, conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def close(self) -> None:
        """Close the connection (idempotent); later calls raise StoreClosed."""
        if self._conn is not None:
            conn, self._conn, self._raw = self._conn, None, None
            engine, self._engine = self._engine, None

            def shut() -> None:
                conn.close()
                if engine is not None:
                    engine.dispose()

            await self._call(shut)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[..., T], *args: Any, urgent: bool = False) -> T:
        if self._executor is None:
            raise StoreClosed("store is not open")
        return await asyncio.wrap_future(self._executor.submit(fn, *args, urgent=urgent))

    def _c(self) -> Connection:
        if self._conn is None:
            raise StoreClosed("store is not open")
        return self._conn

    def _in_transaction(
        self, fn: Callable[[StoreConn], T], read: bool = False, durable: bool = True
    ) -> T:
        if not self.postgres:
            return self._in_sqlite_transaction(fn, read, durable)
        conn = self._c()
        if conn.in_transaction():  # a failed statement left one open: start clean
            conn.rollback()
        try:
            with conn.begin():
                if not durable and not read:
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                return fn(_PostgresConn(conn, self._id_tables))
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated or conn.invalidated:
                conn.rollback()  # the next call reconnects
            raise

    def _sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection under SQLAlchemy's (a new one after `_sqlite_reset`)."""
        if self._raw is None:
            raw = self._c().connection.dbapi_connection
            assert isinstance(raw, sqlite3.Connection)
            self._raw = raw
        return self._raw

    def _sqlite_reset(self) -> None:
        """Drop a connection left in a state we cannot undo; the next call opens a new one
        (which starts durable: `_sqlite_connect` sets every pragma again)."""
        self._raw = None
        if self._conn is not None:
            self._conn.invalidate()

    def _in_sqlite_transaction(self, fn: Callable[[StoreConn], T], read: bool, durable: bool) -> T:
        raw = self._sqlite()
        if raw.in_transaction:  # a failed commit left one open: start clean
            try:
                raw.rollback()
            except sqlite3.Error:
                self._sqlite_reset()
                raw = self._sqlite()
        relaxed = not durable and not read
        if relaxed:
            raw.execute("PRAGMA synchronous=NORMAL")  # outside the transaction
        try:
            # a read needs no write lock (BEGIN); a write takes it at once (IMMEDIATE)
            raw.execute("BEGIN" if read else "BEGIN IMMEDIATE")
            try:
                result = fn(_SqliteConn(raw))
                raw.commit()
            except BaseException:
                if raw.in_transaction:
                    try:
                        raw.rollback()
                    except sqlite3.Error:  # the caller hears the first error, not this one
                        self._sqlite_reset()
                raise
            return result
        finally:
            if relaxed:
                try:
                    raw.execute(f"PRAGMA synchronous={SQLITE_SYNC}")
                except Exception:  # never left relaxed: a new connection starts durable
                    self._sqlite_reset()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; return the new id of an INSERT into a
        table with a generated id, else the number of rows changed."""

        def run(c: StoreConn) -> int:
            cur = c.execute(sql, params)
            return cur.lastrowid if cur.lastrowid else cur.rowcount

        return await self._call(self._in_transaction, run)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows (`Row`: by position and by column name)."""
        return await self._call(
            self._in_transaction, lambda c: c.execute(sql, params).fetchall(), True
        )

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The first row (`Row`) or None."""
        return await self._call(
            self._in_transaction, lambda c: c.execute(sql, params).fetchone(), True
        )

    async def checkpoint(self) -> None:
        """SQLite: copy the WAL into the database and truncate it to zero bytes (a small WAL
        needs little free space to keep working on a nearly full disk); PostgreSQL: nothing."""
        if self.path is None:
            return

        def run() -> None:
            raw = self._sqlite()
            if raw.in_transaction:
                raw.rollback()
            raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()  # outside a transaction

        await self._call(run)

    async def transaction(
        self, fn: Callable[[Any], T], *, durable: bool = True, urgent: bool = False
    ) -> T:
        """Run `fn(conn)` inside one transaction (SQLite: IMMEDIATE), in the store thread;
        `conn` is a `StoreConn`. `durable=False`: committed without waiting for the disk;
        `urgent=True`: before the calls queued that are not (see the module's docstring)."""
        return await self._call(self._in_transaction, fn, False, durable, urgent=urgent)


SQLITE_SYNC = "FULL"


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # we say BEGIN ourselves (see _sqlite_begin)
    for pragma in (
        "journal_mode=WAL",
        f"synchronous={SQLITE_SYNC}",
        "foreign_keys=ON",
        "busy_timeout=5000",
    ):
        dbapi_conn.execute(f"PRAGMA {pragma}")


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN" if conn.info.get("read") else "BEGIN IMMEDIATE")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
