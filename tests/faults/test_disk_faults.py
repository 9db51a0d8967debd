"""A full disk under the store: chat still gets replies, and /ready says why it is 503.

The state directory is a small tmpfs filled to the last byte, so SQLite's next write fails
the way it does on a full production disk ("database or disk is full").
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from bot.config.model import parse_config
from tests.support.real import deploybot
from tests.support.webhookbot import RunningBot

pytestmark = pytest.mark.faults


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "state"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs (run as root): {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs (run as root): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it."""
    filler = directory / "filler"
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


async def test_full_disk_gives_direct_replies_and_ready_503(
    demo_config_path: Path, small_disk: Path
) -> None:
    data = yaml.safe_load(demo_config_path.read_text())
    data["monitors"] = {"enabled": False}
    data["bot"]["state_dir"] = str(small_disk)
    async with RunningBot(parse_config(data)) as bot:

        async def say(line: str) -> None:
            os.write(bot._write_fd, line.encode() + b"\n")

        async def ready() -> tuple[int, str]:
            async with aiohttp.ClientSession() as http:
                async with http.get(bot.base + "/ready") as r:
                    return r.status, (await r.text()).strip()

        await say("!log before the disk filled")
        await bot.wait_line(r"^logged #1 ")
        assert (await ready())[0] == 200
        filler = fill(small_disk)
        for n in range(3):
            await say(f"!log number {n} while full")
        await say("!whoami")
        await bot.wait_line(r"^you are console:tester")
        failed = [line for line in bot.lines() if line.startswith("log: failed:")]
        assert len(failed) == 3
        assert "the bot's store cannot write (database or disk is full)" in failed[0]
        status, why = await ready()
        assert (status, why) == (503, "store cannot write: database or disk is full")
        filler.unlink()
        await say("!log after the disk was freed")
        await bot.wait_line(r"^logged #2 ")
        assert await ready() == (200, "ready")
        entries = await bot.app.services.sal.query(limit=10)
        assert [e.message.split(": ", 1)[1] for e in reversed(entries)] == [
            "before the disk filled", "after the disk was freed",
        ]  # fmt: skip


def test_read_only_state_dir_is_one_line_naming_the_path(
    demo_config_path: Path, tmp_path: Path
) -> None:
    readonly = tmp_path / "ro"
    readonly.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(readonly)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs (run as root): {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs (run as root): {done.stderr.strip()}")
    try:
        data = yaml.safe_load(demo_config_path.read_text())
        data["bot"]["state_dir"] = str(readonly / "var")
        config = tmp_path / "deploybot.yaml"
        config.write_text(yaml.safe_dump(data))
        res = subprocess.run(
            [*deploybot(), "run", "-c", str(config)],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    finally:
        subprocess.run(["umount", "-l", str(readonly)], check=False)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"deploybot: state directory {readonly / 'var'} is not writable: Read-only file system"
    ]


async def test_a_refused_command_is_answered_when_the_store_cannot_write(
    demo_config_path: Path, small_disk: Path
) -> None:
    """The refusal's SAL entry cannot be written: the refusal is still said (it was lost)."""
    data = yaml.safe_load(demo_config_path.read_text())
    data["monitors"] = {"enabled": False}
    data["bot"]["state_dir"] = str(small_disk)
    data["auth"] = {"rules": [{"who": ["console:somebody-else"], "role": "admin"}]}
    async with RunningBot(parse_config(data)) as bot:
        bot.say("!lock builds-api tools before the disk filled")
        first = await bot.wait_line(r"^lock: refused")
        assert len(await bot.app.services.sal.query(limit=10)) == 1  # the refusal, logged
        fill(small_disk)
        bot.say("!lock builds-api tools while full")
        bot.say("!whoami")
        await bot.wait_line(r"^you are console:tester")
        refused = [line for line in bot.lines() if line.startswith("lock: refused")]
        assert refused[0] == first
        assert len(refused) == 2, bot.lines()
        assert refused[1].startswith(first + " (not in the SAL: the bot's store cannot write")
        assert "database or disk is full" in refused[1]
