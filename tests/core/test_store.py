"""The store on both engines: the API every module uses, the startup checks, `store copy`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from bot.core.errors import StoreError
from bot.core.health import is_store_failure
from bot.store.db import Store, StoreConn
from bot.store.migrations.legacy import LEGACY
from tests.support.real import deploybot

pytestmark = pytest.mark.both_engines


async def test_the_api_modules_use_works_the_same_on_both_engines(store_url: str) -> None:
    store = Store(store_url)
    await store.open()
    try:
        first = await store.execute(
            "INSERT INTO sal (ts, actor, action, message) VALUES (?, ?, ?, ?)",
            ("2026-11-26T10:00:00Z", "irc:taavi", "log", "disk 100% full; it's fixed?"),
        )
        row = await store.fetchone("SELECT id, message FROM sal WHERE message LIKE '%100%'")
        assert row is not None and (row[0], row["message"]) == (first, row[1])
        assert dict(row) == {"id": first, "message": "disk 100% full; it's fixed?"}

        def twice(conn: StoreConn) -> list[tuple[int, int | None]]:
            out = []
            for _ in range(2):
                cur = conn.execute(
                    "INSERT INTO events (dedupe_key, kind, body, received_at)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT(dedupe_key) DO NOTHING",
                    ("uuid-1", "Push Hook", b"\x00{}", 1.5),
                )
                out.append((cur.rowcount, cur.lastrowid))
            return out

        (new, new_id), (dup, _) = await store.transaction(twice)
        assert (new, dup) == (1, 0) and new_id
        body = await store.fetchone("SELECT body FROM events WHERE id=?", (new_id,))
        assert bytes(body["body"]) == b"\x00{}"

        def fails(conn: StoreConn) -> None:
            conn.execute("DELETE FROM sal")
            raise RuntimeError("half-way")

        with pytest.raises(RuntimeError):
            await store.transaction(fails)
        assert (await store.fetchone("SELECT count(*) FROM sal"))[0] == 1  # rolled back
    finally:
        await store.close()


async def test_a_failed_statement_or_commit_leaves_the_store_working_and_durable(
    store_url: str,
) -> None:
    store = Store(store_url)
    await store.open()
    try:
        insert = "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?, ?, ?, ?)"
        await store.execute(insert, ("k1", "Push Hook", b"{}", 1.0))

        def clash(conn: StoreConn) -> None:
            conn.execute("DELETE FROM sal")
            conn.execute("UPDATE events SET id = NULL")  # NOT NULL: the database refuses it

        with pytest.raises(Exception) as err:
            await store.transaction(clash, durable=False)
        assert is_store_failure(err.value)  # the database's own error, as /ready reports it
        assert (await store.fetchone("SELECT count(*) FROM events"))[0] == 1
        new = await store.execute(insert, ("k2", "Push Hook", b"{}", 2.0))
        assert (await store.fetchone("SELECT dedupe_key FROM events WHERE id=?", (new,)))[0] == "k2"
        if not store.postgres:  # the relaxed commit's pragma is put back, even after a failure
            assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # FULL
        rows = await store.fetchall("SELECT dedupe_key AS k, id FROM events ORDER BY id")
        assert [(r["k"], r[1]) for r in rows] == [("k1", rows[0][1]), ("k2", new)]
        assert [r.keys() for r in rows] == [["k", "id"], ["k", "id"]]
    finally:
        await store.close()


async def test_sqlite_reads_go_on_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    """A read begins a plain transaction (no write lock): `!status` answers while the
    lease or a `store copy` writes (a read that took the lock would wait 5 s, then fail)."""
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    other = sqlite3.connect(tmp_path / "s.sqlite3", isolation_level=None, timeout=0)
    try:
        other.execute("BEGIN IMMEDIATE")
        assert (await store.fetchone("SELECT count(*) FROM sal"))[0] == 0
        other.execute("ROLLBACK")
        await store.execute("INSERT INTO sal (ts, actor, action, message) VALUES (?,?,?,?)",
                            ("2026-12-07T06:00:00Z", "irc:a", "log", "x"))  # fmt: skip
        other.execute("BEGIN IMMEDIATE")  # the store's write let the lock go at its COMMIT
        assert other.execute("SELECT count(*) FROM sal").fetchone()[0] == 1
        other.execute("ROLLBACK")
    finally:
        other.close()
        await store.close()


async def test_a_schema_newer_than_the_code_is_refused_and_left_alone(store_url: str) -> None:
    store = Store(store_url)
    await store.open()
    await store.execute("UPDATE alembic_version SET version_num='r9999'")
    await store.close()
    with pytest.raises(StoreError) as err:
        await Store(store_url).open()
    assert "schema revision r9999, newer than this deploybot" in str(err.value)
    assert "\n" not in str(err.value)
    store = Store(store_url)  # still there, untouched (the version is ours to put back)
    assert store.describe() in str(err.value)


@pytest.mark.postgresql_only  # one SQLite file belongs to one process
async def test_replicas_starting_together_migrate_one_at_a_time(store_url: str) -> None:
    stores = [Store(store_url) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))  # none trips over another's tables
    try:
        assert (await stores[2].fetchone("SELECT count(*) FROM alembic_version"))[0] == 1
    finally:
        for store in stores:
            await store.close()


def _config(tmp_path: Path, state: Path) -> Path:
    path = tmp_path / "deploybot.yaml"
    path.write_text(yaml.safe_dump({"bot": {"state_dir": str(state)}}))
    return path


@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "is empty (0 bytes)"), (b"SQLite format 3\x00" + b"\xff" * 4000, "is corrupt")],
)
def test_an_empty_or_corrupt_sqlite_file_is_refused_with_one_line(
    tmp_path: Path, content: bytes, words: str
) -> None:
    state = tmp_path / "var"
    state.mkdir()
    db = state / "deploybot.sqlite3"
    db.write_bytes(content)
    res = subprocess.run(
        [*deploybot(), "sal", "-c", str(_config(tmp_path, state))],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and str(db) in res.stderr and words in res.stderr
    assert db.read_bytes() == content  # nothing was created over it


async def test_a_store_from_before_alembic_keeps_its_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, script in enumerate(LEGACY[:5], start=1):
        conn.executescript(script)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute(
        "INSERT INTO sal (ts, actor, action, message) VALUES ('t', 'irc:a', 'log', 'old entry')"
    )
    conn.close()
    store = Store(db)
    await store.open()
    try:
        assert [r["message"] for r in await store.fetchall("SELECT message FROM sal")] == [
            "old entry"
        ]
        await store.execute(
            "INSERT INTO alerts (kind, component, env, detail, text, first_seen)"
            " VALUES ('drift', 'c', 'e', '', 'x', 1)"
        )  # a table of a later legacy version exists now
        assert (await store.fetchone("SELECT version_num FROM alembic_version"))[0]
    finally:
        await store.close()


def _deploybot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*deploybot(), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.postgresql_only  # copies a SQLite store into PostgreSQL
def test_store_copy_moves_a_populated_sqlite_store_and_the_sal_reads_back_identical(
    tmp_path: Path, store_url: str, demo_config_path: Path
) -> None:
    data = yaml.safe_load(demo_config_path.read_text())
    data.pop("store")
    sqlite_config = tmp_path / "sqlite.yaml"
    sqlite_config.write_text(yaml.safe_dump(data))
    session = "".join(f"!log entry {i} 100% done T{1000 + i}\n" for i in range(25))
    res = subprocess.run(
        [*deploybot(), "run", "-c", str(sqlite_config)],
        input=session, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    source = f"sqlite:///{Path(data['bot']['state_dir']) / 'deploybot.sqlite3'}"

    copied = _deploybot("store", "copy", "--from", source, "--to", store_url)
    assert copied.returncode == 0, copied.stderr
    assert "(sal: 25 entries)" in copied.stdout

    before = _deploybot("sal", "-c", str(sqlite_config), "--json", "--limit", "100")
    after = _deploybot("sal", "-c", str(demo_config_path), "--json", "--limit", "100")
    assert before.returncode == after.returncode == 0
    assert len(before.stdout.splitlines()) == 25
    assert after.stdout == before.stdout

    again = _deploybot("store", "copy", "--from", source, "--to", store_url)
    assert again.returncode == 2
    assert "already holds data" in again.stderr and again.stderr.count("\n") == 1

    res = subprocess.run(
        [*deploybot(), "run", "-c", str(demo_config_path)],
        input="!log after the move\n", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    newest = json.loads(
        _deploybot("sal", "-c", str(demo_config_path), "--json", "--limit", "1").stdout
    )
    assert newest["message"].endswith("after the move") and newest["id"] == 26
