"""The SQLite store: the one place state that matters lives, so a `kill -9` loses nothing.

One connection, used from one dedicated thread (so the event loop never blocks on disk and
no two statements interleave). WAL journal with synchronous=NORMAL: a committed transaction
survives the process being killed. The schema is versioned with `PRAGMA user_version`;
each migration runs once, in order. Domain modules (sal, outbox, locks, ...) own their SQL.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # 1: SAL, its per-sink deliveries, the announcement outbox, locks
    """
    CREATE TABLE sal (
        id INTEGER PRIMARY KEY,
        ts TEXT NOT NULL,
        actor TEXT NOT NULL,
        component TEXT,
        env TEXT,
        action TEXT NOT NULL,
        from_version TEXT,
        to_version TEXT,
        commit_sha TEXT,
        mr_url TEXT,
        tasks TEXT NOT NULL DEFAULT '',
        result TEXT,
        log_url TEXT,
        message TEXT NOT NULL,
        sal_project TEXT
    );
    CREATE INDEX sal_component ON sal(component, env, id);
    CREATE TABLE sal_delivery (
        entry_id INTEGER NOT NULL REFERENCES sal(id),
        sink TEXT NOT NULL,
        delivered_at TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        PRIMARY KEY (entry_id, sink)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        adapter TEXT,
        room TEXT NOT NULL,
        text TEXT NOT NULL,
        key TEXT,
        final INTEGER NOT NULL DEFAULT 0,
        priority INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX outbox_pending ON outbox(sent_at, room, priority, id);
    CREATE TABLE locks (
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        owner TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (component, env)
    );
    """,
    # 2: GitLab webhook events (persisted before the 200) and pipeline states
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        dedupe_key TEXT UNIQUE,
        kind TEXT NOT NULL,
        body BLOB NOT NULL,
        received_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        error TEXT
    );
    CREATE INDEX events_pending ON events(status, id);
    CREATE TABLE pipelines (
        project TEXT NOT NULL,
        pipeline_id INTEGER NOT NULL,
        component TEXT,
        ref TEXT,
        sha TEXT,
        status TEXT,
        stage TEXT,
        version TEXT,
        url TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (project, pipeline_id)
    );
    CREATE INDEX pipelines_sha ON pipelines(sha);
    """,
    # 3: webhook processing (issue 4): the last announced state of control-repo MRs
    """
    CREATE TABLE merge_requests (
        project TEXT NOT NULL,
        iid INTEGER NOT NULL,
        component TEXT,
        state TEXT NOT NULL,
        summary TEXT NOT NULL,
        url TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (project, iid)
    );
    """,
    # 4: reserved for control-repo bumps (issue 5)
    "",
    # 5: deploys (issue 6): one row per apply/rollback, its state written at every step
    """
    CREATE TABLE deploys (
        id INTEGER PRIMARY KEY,
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        action TEXT NOT NULL,
        version TEXT,
        from_version TEXT,
        commit_sha TEXT,
        mr_url TEXT,
        actor TEXT NOT NULL,
        tasks TEXT NOT NULL DEFAULT '',
        state TEXT NOT NULL,
        result TEXT,
        log_path TEXT NOT NULL DEFAULT '',
        started_at REAL NOT NULL,
        finished_at REAL,
        error TEXT
    );
    CREATE INDEX deploys_target ON deploys(component, env, id);
    CREATE INDEX deploys_state ON deploys(state);
    """,
    # 6: monitor alerts (issue 7; bot/alerts.py) and when a live version was first seen
    """
    CREATE TABLE alerts (
        kind TEXT NOT NULL,
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        detail TEXT NOT NULL,
        text TEXT NOT NULL,
        first_seen REAL NOT NULL,
        since REAL,
        raised_at REAL,
        reminded_at REAL,
        PRIMARY KEY (kind, component, env, detail)
    );
    CREATE TABLE live_seen (
        component TEXT NOT NULL,
        env TEXT NOT NULL,
        version TEXT NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (component, env)
    );
    """,
    # 7: a short form of an announcement, used when a backlog is packed into summary lines
    "ALTER TABLE outbox ADD COLUMN short TEXT",
    # 8: the action a SAL entry belongs to (one chat command: its entries share the id)
    "ALTER TABLE sal ADD COLUMN action_id TEXT",
]


class StoreClosed(RuntimeError):
    """The store was closed (shutdown in progress)."""


class Store:
    """Async facade over one SQLite connection."""

    def __init__(self, path: Path):
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        await self._call(self._open_sync)

    def _open_sync(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={number}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._conn = conn

    @property
    def is_open(self) -> bool:
        return self._conn is not None

    async def close(self) -> None:
        """Close the connection (idempotent); later calls raise StoreClosed."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await self._call(conn.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreClosed("store is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed("store is not open")
        return self._conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement in its own transaction; return lastrowid (or rowcount)."""

        def run() -> int:
            cur = self._c().execute(sql, params)
            return cur.lastrowid if cur.lastrowid else cur.rowcount

        return await self._call(run)

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self._call(lambda: self._c().execute(sql, params).fetchall())

    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return await self._call(lambda: self._c().execute(sql, params).fetchone())

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` inside one IMMEDIATE transaction, in the store thread."""

        def run() -> T:
            conn = self._c()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._call(run)
