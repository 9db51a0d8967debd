"""The CLI tells the truth, run as a user runs it (subprocesses): a busy port is one line
and a non-zero exit, `demo --listen` always wins (and `make demo` passes PORT=/LISTEN=),
`sal --since` takes ISO times and ages and rejects the rest, and `sal | head` exits quietly."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from pathlib import Path

from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal, SalEntry
from tests.support.real import deploybot
from tests.support.session import free_port

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*deploybot(), *args],
        input=stdin, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip


def test_a_busy_port_is_one_line_and_a_failing_exit(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = cli("demo", "--dir", str(tmp_path / "demo"), "--listen", f"127.0.0.1:{port}")
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        f"deploybot: cannot listen on 127.0.0.1:{port}: Address already in use (port {port}"
        " is taken? choose another with http.listen, or --listen for the demo)"
    )


def test_demo_listen_always_wins_and_make_demo_passes_the_port(tmp_path: Path) -> None:
    demo = str(tmp_path / "demo")
    first, second = free_port(), free_port()
    assert f"127.0.0.1:{first}/webhooks" in cli("demo", "--dir", demo, "--listen",
                                                 f"127.0.0.1:{first}").stdout  # fmt: skip
    again = cli("demo", "--dir", demo, "--listen", f"127.0.0.1:{second}", stdin="!sal\n")
    assert again.returncode == 0, again.stderr
    assert f"webhooks on http://127.0.0.1:{second}/webhooks/gitlab" in again.stdout
    assert f"board on http://127.0.0.1:{second}/status" in again.stdout  # beside the webhooks
    config = (tmp_path / "demo" / "deploybot.yaml").read_text()
    assert f"public_url: http://127.0.0.1:{second}" in config
    for make_args, listen in (("PORT=18555", "127.0.0.1:18555"), ("LISTEN=0.0.0.0:9", "0.0.0.0:9")):
        dry = subprocess.run(["make", "-n", "demo", make_args], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)  # fmt: skip
        assert f"deploybot demo --listen {listen}" in dry.stdout, dry.stdout


async def _old_entries(db: Path, n: int) -> None:
    store = Store(db)
    await store.open()
    sal = Sal(store, [], Redactor())
    for i in range(n):  # written long ago
        await sal.record(SalEntry(actor="console:x", action="log", message=f"old {i} " + "x" * 200,
                                  ts="2020-01-01T00:00:00Z"))  # fmt: skip
    await store.close()


def test_sal_since_and_a_reader_that_leaves(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    made = cli("demo", "--dir", str(demo), "--listen", f"127.0.0.1:{free_port()}",
               stdin="!log the newest entry\n")  # fmt: skip
    assert made.returncode == 0, made.stderr
    config = str(demo / "deploybot.yaml")
    asyncio.run(_old_entries(demo / "var" / "deploybot.sqlite3", 400))  # > a pipe buffer

    recent = cli("sal", "-c", config, "--since", "1h")
    assert recent.returncode == 0 and recent.stdout.count("\n") == 1
    assert "the newest entry" in recent.stdout
    iso = cli("sal", "-c", config, "--since", "2019-12-31", "--limit", "1000")
    assert iso.stdout.count("\n") == 401
    for bad in ("yesterday", "1x", "2026-13-01"):
        res = cli("sal", "-c", config, "--since", bad)
        assert res.returncode == 2 and res.stdout == ""
        assert res.stderr.strip() == (
            f"deploybot sal: --since {bad!r}: give an ISO time (2026-11-01,"
            " 2026-11-01T12:00:00Z) or an age (30m, 1h, 2d, 1w)"
        )

    proc = subprocess.Popen(
        [*deploybot(), "sal", "-c", config, "--limit", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # like `head -1`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err, err
