"""Process helpers shared by the real-server fixtures: ports, deadlines, stopping by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NoReturn

import pytest

HOST = "127.0.0.1"
POLL = 0.05  # seconds between readiness polls of an external process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server may still lose a race)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def missing(what: str, install: str) -> NoReturn:
    """A server binary is not installed: fail under CI=true, else skip with the install command."""
    message = f"{what} is not installed; install it with: {install}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    alive: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll `check` until it is true; TimeoutError after `timeout` s, or at once if `alive` died."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if alive is not None and alive.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {alive.returncode}{log_tail(log)}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}{log_tail(log)}")
        time.sleep(POLL)  # an external process: nothing to await from sync code


def log_tail(log: Path | None, lines: int = 15) -> str:
    if log is None or not log.exists():
        return ""
    tail = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log) + " ---\n" + "\n".join(tail)


def tcp_listening(port: int, host: str = HOST) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def children_of(pid: int) -> list[int]:
    """PIDs whose parent is `pid` (from /proc), so a server's workers can be signalled too."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces: split after the last ')'
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def signal_pids(pids: Iterable[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def stop_process(
    proc: subprocess.Popen[bytes],
    signals: Iterable[tuple[signal.Signals, float]] = ((signal.SIGTERM, 5.0),),
) -> int:
    """Send each (signal, grace seconds) in turn until `proc` exits; SIGKILL last. Returns the
    exit code. Only this PID is signalled."""
    for sig, grace in signals:
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)
    return proc.returncode


def most_at_once(spans: Iterable[dict[str, float]]) -> int:
    """The most runs at once among `{"start", "end"}` spans (the recording helmfile's
    `$FAKE_HELM_SPANS` lines)."""
    spans = list(spans)
    edges = sorted([(s["start"], 1) for s in spans] + [(s["end"], -1) for s in spans])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most
