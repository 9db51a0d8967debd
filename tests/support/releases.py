"""A new release of a component: a commit on its repository's main with a CI release tag."""

from __future__ import annotations

from pathlib import Path

from bot.core.git import git


async def new_release(repo: Path, work: Path, n: int, stamp: str = "20261201120000") -> str:
    """Clone the bare `repo` into `work`, commit a change, tag `0.0.<n>-<stamp>-<sha8>` and
    push both; returns the version."""
    await git("clone", "--quiet", str(repo), str(work))
    (work / "CHANGES").write_text(f"change {n}\n")
    await git("add", "CHANGES", cwd=work)
    await git("-c", "user.name=Dev", "-c", "user.email=dev@example.org", "commit", "--quiet",
              "-m", f"change {n}", cwd=work)  # fmt: skip
    sha = (await git("rev-parse", "HEAD", cwd=work)).strip()
    version = f"0.0.{n}-{stamp}-{sha[:8]}"
    await git("tag", version, cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", version, cwd=work)
    return version
