"""Reads of the control repo checkout (`bot.control.repo.ControlRepo`) on real git
repositories: what is kept between reads (files, the commits that changed a file) never hides a pushed change once it is fetched,
whether the tracking branch is a loose ref or in packed-refs, and a commit that was not
fetched yet is read once it is."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bot.control.repo import ControlRepo

FILE = "components/builds-api/values/tools.yaml"


def run(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def push_pin(work: Path, version: str) -> str:
    """Commit `chartVersion: <version>` in the work clone, push it to main; its commit id."""
    path = work / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"chartVersion: {version}\n")
    run(work, "add", FILE)
    run(work, "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", version)
    run(work, "push", "-q", "origin", "HEAD:main")
    return run(work, "rev-parse", "HEAD")


@pytest.fixture
def remote(tmp_path: Path) -> tuple[Path, Path]:
    bare = tmp_path / "control.git"
    run(tmp_path, "init", "-q", "--bare", "--initial-branch=main", str(bare))
    work = tmp_path / "work"
    run(tmp_path, "clone", "-q", str(bare), str(work))
    push_pin(work, "0.0.1")
    return bare, work


@pytest.mark.parametrize("packed", [False, True], ids=["loose-ref", "packed-refs"])
async def test_a_pushed_change_is_read_after_the_fetch_never_before(
    tmp_path: Path, remote: tuple[Path, Path], packed: bool
) -> None:
    bare, work = remote
    repo = ControlRepo(f"file://{bare}", "main", tmp_path / "checkout")
    await repo.sync()
    if packed:
        run(repo.workdir, "pack-refs", "--all")
    assert await repo.read(FILE) == "chartVersion: 0.0.1\n"

    assert len(await repo.commits_touching(FILE, 30)) == 1

    push_pin(work, "0.0.2")
    assert await repo.read(FILE) == "chartVersion: 0.0.1\n"  # as git says until the fetch
    assert len(await repo.commits_touching(FILE, 30)) == 1
    await repo.sync()
    assert await repo.read(FILE) == "chartVersion: 0.0.2\n"
    assert len(await repo.commits_touching(FILE, 30)) == 2
    assert await repo.read("components/none.yaml") is None


async def test_a_commit_is_read_once_fetched_though_it_was_missing_before(
    tmp_path: Path, remote: tuple[Path, Path]
) -> None:
    bare, work = remote
    repo = ControlRepo(f"file://{bare}", "main", tmp_path / "checkout")
    await repo.sync()
    first = run(repo.workdir, "rev-parse", "origin/main")
    assert await repo.read(FILE, first) == "chartVersion: 0.0.1\n"

    later = push_pin(work, "0.0.3")
    assert await repo.read(FILE, later) is None  # not here yet
    await repo.sync()
    assert await repo.read(FILE, later) == "chartVersion: 0.0.3\n"
    assert await repo.read(FILE, first) == "chartVersion: 0.0.1\n"
