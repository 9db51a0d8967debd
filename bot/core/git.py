"""Running git as a subprocess (argv, never a shell) with a timeout."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from bot.core.tasks import within


class GitError(Exception):
    """A git command failed; the message is one line."""


async def git(*args: str, cwd: Path | None = None, timeout: float = 120.0) -> str:
    """Run `git args...`; return stdout. Raises GitError with git's last stderr line."""
    return (await git_bytes(*args, cwd=cwd, timeout=timeout)).decode(errors="replace")


async def git_bytes(
    *args: str, cwd: Path | str | None = None, timeout: float = 120.0, stdin: bytes | None = None
) -> bytes:
    """Run `git args...` feeding `stdin`; return raw stdout. Raises GitError."""
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "deploybot"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "deploybot@localhost"),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "deploybot"),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "deploybot@localhost"),
    }
    proc = await asyncio.create_subprocess_exec(
        "git",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await within(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise GitError(f"git {args[0]} timed out after {timeout:.0f}s") from None
    except BaseException:  # cancelled: never leave an orphaned git behind
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]} failed: {lines[-1] if lines else proc.returncode}")
    return out
