"""`deploybot run` as a subprocess that a test can `kill -9`, and polling another process's
files with a deadline: the bed of the crash tests."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.real import deploybot, real

ROOT = Path(__file__).resolve().parents[2]


@real
async def start_bot(
    config: Path, out: Path, env: dict[str, str] | None = None, *, own_group: bool = False
) -> asyncio.subprocess.Process:
    """`deploybot run -c config`, console on stdin, everything it prints to `out`. `env`
    replaces the environment; `own_group` starts it in a new session, so whatever it starts
    outside its deploy steps' own groups can be found by its process group id (its pid)."""
    with out.open("ab") as fh:
        return await asyncio.create_subprocess_exec(
            *deploybot(), "run", "-c", str(config),
            cwd=ROOT, env=dict(os.environ) if env is None else env,
            stdin=asyncio.subprocess.PIPE, stdout=fh, stderr=fh, start_new_session=own_group,
        )  # fmt: skip


async def until(
    check: Callable[[], bool], what: str, within: float = 60.0, *, show: Path | None = None
) -> None:
    """Poll `check` until it holds; on a timeout, the failure quotes the end of `show` (a
    bot's output and log), so a rare failure can be read from the run that had it."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)  # another process's files
    tail = ""
    if show is not None and show.exists():
        tail = "; the end of its output:\n" + "\n".join(show.read_text().splitlines()[-30:])
    raise AssertionError(f"timed out waiting for {what}{tail}")
