"""Waiting for a condition the test does not own: the state belongs to another process (its
files, its output) or to the app's own event loop (its store, an adapter's flags), so all a
test can do is look again until it holds. Every wait has a deadline, and a timeout says what
did not happen and, given that process's output file, how it ended."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    within: float = 20.0,
    *,
    show: Path | None = None,
    every: float = 0.05,
) -> None:
    """Poll `check` (plain, or returning an awaitable) every `every` s until it holds. After
    `within` s (an awaited check included) raise AssertionError naming `what`, quoting the
    last 30 lines of `show` (a bot's output and log) so a rare failure reads from its run."""
    deadline = asyncio.timeout(within)
    try:
        async with deadline:
            while True:
                held = check()
                if inspect.isawaitable(held):
                    held = await held
                if held:
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        if not deadline.expired():
            raise  # the check's own
    tail = ""
    if show is not None and show.exists():
        tail = "; the end of its output:\n" + "\n".join(
            show.read_text(errors="replace").splitlines()[-30:]
        )
    raise AssertionError(f"timed out after {within:g}s waiting for {what}{tail}")
