"""Background tasks an owner started and must not lose: `TaskSet`.

asyncio keeps only a weak reference to a task, so every owner of fire-and-forget work (a
deploy, an artifact look-up, a chat command, a webhook lane) kept a set and a done-callback
of its own. This is that bookkeeping once: tasks stay referenced until they finish, the
owner can wait until none runs, and stopping cancels them together.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for(aw, timeout)` without its Python 3.11 flaw: a cancellation that
    arrives as `aw` finishes is lost there (the task runs on, and a shutdown that cancelled it
    waits for it forever: seen as a hung stop of the event worker under load);
    `asyncio.timeout` delivers it. TimeoutError after `timeout` s (None: no limit)."""
    async with asyncio.timeout(timeout):
        return await aw


async def wait_until(event: asyncio.Event, timeout: float) -> bool:
    """Until `event` is set; False on timeout."""
    try:
        await within(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


def shared(work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """Work several callers await (each through `asyncio.shield`, so one giving up does not
    cancel it for the others); when all gave up, its failure is not reported as "Task
    exception was never retrieved"."""
    future = asyncio.ensure_future(work)
    future.add_done_callback(lambda f: f.cancelled() or f.exception())
    return future


class TaskSet:
    """Tasks started by one owner; each is kept until it finishes."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        *,
        name: str | None = None,
        on_done: Callable[[asyncio.Task[T]], None] | None = None,
    ) -> asyncio.Task[T]:
        """Start `coro`; `on_done(task)` runs when it ends, before the set may turn idle."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        self._idle.clear()

        def done(t: asyncio.Task[T]) -> None:
            if on_done is not None:
                on_done(t)
            self._tasks.discard(t)
            if not self._tasks:
                self._idle.set()

        task.add_done_callback(done)
        return task

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._tasks))

    async def wait_idle(self, timeout: float) -> bool:
        """Until no task of this set runs; False on timeout."""
        return await wait_until(self._idle, timeout)

    async def wait(self, timeout: float | None = None) -> None:
        """Let the running tasks finish, for up to `timeout` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def stop(self) -> None:
        """Cancel every task and wait until each has ended (their errors are theirs)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
