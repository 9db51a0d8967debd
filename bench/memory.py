"""`python -m bench.memory`: where the demo's idle memory goes.

Starts `deploybot demo` (the embedded defaults) three times as a subprocess, its stdin an open
pipe (an idle console): plain, and as `pip install .` runs it (without the test extras), reading
VmRSS from /proc after it settled; once with tracemalloc on from the first import, printing the
top 10 allocation sites by package and by line at idle. Prints one JSON object. Goal (issue 26):
idle RSS <= 80 MB as installed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTLE_S = 8.0
GOAL_MB = 80.0

TRACED = """
import asyncio, sys, tracemalloc
tracemalloc.start(1)
from pathlib import Path
from bot.demo.setup import run_demo

async def report():
    await asyncio.sleep(float(sys.argv[3]))
    snap = tracemalloc.take_snapshot()
    def pkg(stat):
        name = stat.traceback[0].filename
        for mark in ("site-packages/", "python3.11/", "/bot/", "/commands/"):
            if mark in name:
                tail = name.split(mark, 1)[1]
                return (mark.strip("/") + ":" if mark in ("/bot/", "/commands/") else "") + tail.split("/")[0]
        return name
    by_pkg = {}
    for stat in snap.statistics("filename"):
        by_pkg[pkg(stat)] = by_pkg.get(pkg(stat), 0) + stat.size
    top = sorted(by_pkg.items(), key=lambda kv: -kv[1])[:10]
    lines = [(str(s.traceback[0]).split("site-packages/")[-1], s.size) for s in snap.statistics("lineno")[:10]]
    total = sum(s.size for s in snap.statistics("filename"))
    print("TRACEMALLOC", __import__("json").dumps({"total": total, "by_package": top, "by_line": lines}), flush=True)

async def main():
    asyncio.get_running_loop().create_task(report())
    await run_demo(Path(sys.argv[1]), sys.argv[2])

asyncio.run(main())
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _demo(argv: list[str], settle: float) -> tuple[float, str]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        read_fd, write_fd = os.pipe()
        proc = subprocess.Popen(
            [*argv[:1], *[a.replace("@DIR@", tmp) for a in argv[1:]]],
            cwd=ROOT, stdin=read_fd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        os.close(read_fd)
        try:
            time.sleep(settle)
            rss = _rss_mb(proc.pid)
            traced = ""
            if TRACED in argv:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if line.startswith("TRACEMALLOC "):
                        traced = line.split(" ", 1)[1]
                        break
        finally:
            os.close(write_fd)
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return rss, traced


# The demo as `pip install .` runs it: pygments is in this venv only for pytest (nothing the
# bot installs needs it), and Mako, which Alembic loads to run migrations, uses it when present.
WITHOUT_TEST_EXTRAS = (
    "import sys; sys.modules['pygments'] = None; from bot.cli import main; sys.exit(main())"
)


def main() -> None:
    listen = f"127.0.0.1:{_port()}"
    cli = [sys.executable, "-m", "bot.cli", "demo", "--dir", "@DIR@/demo", "--listen", listen]
    rss, _ = _demo(cli, SETTLE_S)
    installed = [sys.executable, "-c", WITHOUT_TEST_EXTRAS, *cli[3:]]
    rss_installed, _ = _demo(installed, SETTLE_S)
    traced_argv = [sys.executable, "-c", TRACED, "@DIR@/demo", listen, str(SETTLE_S)]
    _, traced = _demo(traced_argv, 1.0)
    top = json.loads(traced) if traced else {}
    print(json.dumps({
        "bench": "memory",
        "what": "deploybot demo, idle (console open, nothing asked)",
        "idle_rss_mb": rss,
        "idle_rss_mb_without_test_extras": rss_installed,
        "goal_mb": GOAL_MB,
        "within_goal": rss_installed <= GOAL_MB,
        "tracemalloc_total_mb": round(top.get("total", 0) / 2**20, 1),
        "tracemalloc_top10_by_package_mb": [
            [name, round(size / 2**20, 2)] for name, size in top.get("by_package", [])
        ],
        "tracemalloc_top10_by_line_kb": [
            [where, round(size / 1024)] for where, size in top.get("by_line", [])
        ],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
