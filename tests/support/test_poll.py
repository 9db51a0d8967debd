"""tests/support/poll.py's `until`: a plain or an async check is polled until it holds; one
that never does fails naming what it waited for and quoting the end of the `show` file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.support.poll import until


async def test_a_plain_check_is_polled_until_it_holds() -> None:
    calls = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    await until(third_time, "the third call", within=0.3, every=0.01)
    assert len(calls) == 3


async def test_an_async_check_is_awaited_until_it_holds() -> None:
    calls = []

    async def third_time() -> bool:
        calls.append(1)
        return len(calls) == 3

    await until(third_time, "the third call", within=0.3, every=0.01)
    assert len(calls) == 3


async def test_a_check_that_never_holds_fails_naming_it_and_quoting_the_output(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out.log"
    out.write_text("".join(f"line {i}\n" for i in range(40)))
    with pytest.raises(AssertionError) as failed:
        await until(lambda: False, "the moon", within=0.3, show=out)
    head, tail = str(failed.value).split("\n", 1)
    assert head == "timed out after 0.3s waiting for the moon; the end of its output:"
    assert tail.splitlines() == [f"line {i}" for i in range(10, 40)]


async def test_without_its_output_file_the_failure_names_what_only(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"^timed out after 0.3s waiting for the moon$"):
        await until(lambda: False, "the moon", within=0.3, show=tmp_path / "absent")


async def test_an_async_check_that_hangs_is_cut_off_at_the_deadline() -> None:
    async def hangs() -> bool:
        await asyncio.Event().wait()
        return True

    with pytest.raises(AssertionError, match=r"^timed out after 0.3s waiting for an answer$"):
        await until(hangs, "an answer", within=0.3)
