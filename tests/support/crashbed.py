"""`deploybot run` as a subprocess that a test can `kill -9`, and polling another process's
files with a deadline (`until`, from tests/support/poll.py): the bed of the crash tests."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from tests.support.poll import until
from tests.support.real import deploybot, real

__all__ = ["ROOT", "start_bot", "until"]

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
