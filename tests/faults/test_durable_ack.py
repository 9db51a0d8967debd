"""An acknowledged webhook survives a power cut, not only a `kill -9`.

The state directory is a real ext4 on a loop device. Right after the 200s the test copies
the loop device's backing file: that copy holds exactly what reached the "disk", not what
sat in the page cache, as after a power cut. Mounted (ext4 replays its journal) and opened
with sqlite3, it must hold every acknowledged event. With `synchronous=NORMAL` the WAL was
not fsynced at commit and the copy held none of them, often not even the tables.
"""

from __future__ import annotations

import copy
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.config.model import parse_config
from bot.store.db import Store
from tests.support.webhookbot import RunningBot, fixture

pytestmark = pytest.mark.faults


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"cannot mount a loop ext4 (run as root with loop devices): {why}")
    pytest.skip(f"cannot mount a loop ext4 (run as root with loop devices): {why}")


class LoopExt4:
    """An ext4 image on a loop device, mounted; `snapshot` mounts a copy of what hit it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.mounts: list[tuple[Path, str]] = []

    def mount(self, image: Path, at: Path) -> None:
        done = _run("losetup", "-f", "--show", str(image))
        if done.returncode != 0:
            _unavailable(done.stderr.strip())
        device = done.stdout.strip()
        at.mkdir(parents=True, exist_ok=True)
        mounted = _run("mount", "-t", "ext4", device, str(at))
        if mounted.returncode != 0:
            _run("losetup", "-d", device)
            _unavailable(mounted.stderr.strip())
        self.mounts.append((at, device))

    def create(self) -> Path:
        image = self.tmp / "disk.img"
        with image.open("wb") as f:
            f.truncate(64 * 1024 * 1024)
        made = _run("mkfs.ext4", "-q", "-F", str(image))
        if made.returncode != 0:
            _unavailable(made.stderr.strip())
        self.mount(image, self.tmp / "state")
        return self.tmp / "state"

    def power_cut(self) -> Path:
        """What the disk holds now (the page cache is not on it): a mounted copy."""
        copy_path = self.tmp / "after-power-cut.img"
        shutil.copyfile(self.tmp / "disk.img", copy_path)
        self.mount(copy_path, self.tmp / "recovered")
        return self.tmp / "recovered"

    def close(self) -> None:
        for at, device in reversed(self.mounts):
            _run("umount", "-l", str(at))
            _run("losetup", "-d", device)


@pytest.fixture
def loop_ext4(tmp_path: Path) -> Iterator[LoopExt4]:
    if shutil.which("losetup") is None or shutil.which("mkfs.ext4") is None:
        _unavailable("losetup or mkfs.ext4 is not installed")
    disk = LoopExt4(tmp_path)
    try:
        yield disk
    finally:
        disk.close()


def pipeline(n: int) -> dict[str, object]:
    body = copy.deepcopy(fixture("pipeline_success.json"))
    body["object_attributes"]["id"] = 910000 + n
    return body


async def test_acknowledged_webhooks_are_on_disk_before_the_200(
    demo_config_path: Path, loop_ext4: LoopExt4
) -> None:
    state = loop_ext4.create()
    data = yaml.safe_load(demo_config_path.read_text())
    data["monitors"] = {"enabled": False}
    data["bot"]["state_dir"] = str(state / "var")
    async with RunningBot(parse_config(data)) as bot:
        acked = 0
        for n in range(10):
            status, _ = await bot.post(pipeline(n), X_Gitlab_Event_UUID=f"durable-{n}")
            acked += status == 200
        assert acked == 10
        recovered = loop_ext4.power_cut()  # at once: NORMAL lost them within ~30 s of the ack
    db = recovered / "var" / "deploybot.sqlite3"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        keys = {r[0] for r in conn.execute("SELECT dedupe_key FROM events")}
    finally:
        conn.close()
    assert {f"durable-{n}" for n in range(10)} <= keys


async def test_the_store_fsyncs_every_commit_and_keeps_the_wal_small(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite3")
    await store.open()
    try:
        assert (await store.fetchone("PRAGMA synchronous"))[0] == 2  # FULL
        for n in range(200):
            await store.execute(
                "INSERT INTO events (dedupe_key, kind, body, received_at) VALUES (?,?,?,?)",
                (f"k{n}", "Pipeline Hook", b"x" * 2000, 0.0),
            )
        wal = tmp_path / "s.sqlite3-wal"
        assert wal.stat().st_size > 100_000
        await store.checkpoint()
        assert wal.stat().st_size == 0
        assert (await store.fetchone("SELECT count(*) FROM events"))[0] == 200
    finally:
        await store.close()
