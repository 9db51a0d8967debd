"""The Server Admin Log: recorded before it is reported, survives kill -9, sinks retried."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from bot.config.model import SalSink
from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal, SalEntry
from tests.support.real import deploybot
from tests.support.session import console_session

pytestmark = pytest.mark.both_engines  # the store behind these runs on SQLite and PostgreSQL


def _lines_of(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    q: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            q.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for(q: queue.Queue[str], needle: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen; got {seen}")


def test_sal_entry_survives_kill_9_of_the_running_bot(demo_config_path: Path) -> None:
    proc = subprocess.Popen(
        [*deploybot(), "run", "-c", str(demo_config_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        out = _lines_of(proc)
        assert proc.stdin is not None
        proc.stdin.write("!log restarted the builds-api pods T358908\n")
        proc.stdin.flush()
        reply = _wait_for(out, "logged #")
        assert "restarted the builds-api pods" in reply
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    res = subprocess.run(
        [*deploybot(), "sal", "-c", str(demo_config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    entries = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(entries) == 1
    assert entries[0]["action"] == "log"
    assert entries[0]["tasks"] == ["T358908"]
    assert entries[0]["actor"].startswith("console:")
    assert entries[0]["message"].endswith(": restarted the builds-api pods T358908")
    jsonl = demo_config_path.parent / "var" / "sal.jsonl"
    assert json.loads(jsonl.read_text().splitlines()[0])["id"] == entries[0]["id"]


async def test_failing_sink_is_retried_from_the_store_and_loses_nothing(
    tmp_path: Path, store_url: str
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the sink wants a directory")
    target = blocker / "sal.jsonl"
    store = Store(store_url)
    await store.open()
    sal = Sal(store, [SalSink(store=True), SalSink(jsonl=target)], Redactor(["s3cr3t-token"]))
    entry = await sal.record(
        SalEntry(actor="irc:taavi", action="log", message="taavi: rotated s3cr3t-token")
    )
    assert entry.id is not None
    stored = await sal.query(limit=10)
    assert [e.message for e in stored] == ["taavi: rotated [redacted]"]
    assert await sal.retry_pending() == 0  # still failing
    blocker.unlink()
    assert await sal.retry_pending() == 1
    assert await sal.retry_pending() == 0  # delivered once
    written = [json.loads(x) for x in target.read_text().splitlines()]
    assert [w["id"] for w in written] == [entry.id]
    assert "s3cr3t" not in target.read_text()
    await store.close()


async def test_log_and_sal_commands_round_trip(demo_config) -> None:  # type: ignore[no-untyped-def]
    out = await console_session(
        demo_config,
        ["!log first T1", "!log deploying builds-api by hand", "!sal", "!sal builds-api", "!sal 1"],
    )
    out = [line for line in out if not line.startswith("[#")]  # announcements to other rooms
    assert out[0].startswith("logged #1 to toolsbeta (the bot's default; ")
    assert out[0].endswith(": tester: first T1")
    assert out[1].startswith("logged #2 ")
    assert "#2 " in out[2] and "deploying builds-api by hand" in out[2]
    assert "#1 " in out[3] and "first T1" in out[3]
    assert "[log builds-api]" in out[4]  # the entry naming a component is filed under it
    assert len(out) == 6 and "#2 " in out[5]
