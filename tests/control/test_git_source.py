"""The plain-git component source (`GitSource`): tags by `git ls-remote`, ancestry in one
mirror clone per repository. Real git repositories throughout."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.config.model import Config, parse_config
from bot.control.releases import GitSource
from bot.core.git import git

VERSIONS = [f"0.0.{n}-2026110{n}120000-{n:08x}" for n in range(1, 5)]


async def _repo(tmp: Path) -> tuple[Path, str]:
    """A work tree whose `main` has one commit per version, each tagged, and its bare clone."""
    work = tmp / "work"
    await git("init", "--quiet", "--initial-branch=main", str(work))
    for version in VERSIONS[:3]:
        await git("commit", "--quiet", "--allow-empty", "-m", version, cwd=work)
        await git("tag", version, cwd=work)
    bare = tmp / "component.git"
    await git("clone", "--quiet", "--bare", str(work), str(bare))
    await git("remote", "add", "bare", str(bare), cwd=work)
    return work, f"file://{bare}"


def _config(tmp: Path, url: str, components: int) -> Config:
    return parse_config({
        "bot": {"state_dir": str(tmp / "var")},
        "control_repo": {"forge": "git", "url": f"file://{tmp / 'unused.git'}"},
        "environments": [{"name": "tools"}],
        "components": {f"c{i:02d}": {"repo_url": url} for i in range(components)},
    })  # fmt: skip


async def test_components_sharing_a_repository_share_one_mirror_and_answers_follow_tags(
    tmp_path: Path,
) -> None:
    work, url = await _repo(tmp_path)
    config = _config(tmp_path, url, 20)
    source = GitSource(config, ttl=0, fetch_every=0)  # nothing reused by time: only by facts
    v1, v2, v3, v4 = VERSIONS

    forward = await asyncio.gather(*(source.is_ancestor(c, v1, v3) for c in config.components))
    backward = await asyncio.gather(*(source.is_ancestor(c, v3, v1) for c in config.components))
    assert forward == [True] * 20 and backward == [False] * 20
    mirrors = list((config.bot.state_dir / "checkouts" / "components").iterdir())
    assert len(mirrors) == 1  # one clone for the 20 components of one repository

    # the tag v1 is moved to a commit off main: the answer follows the tag, not the name
    await git("checkout", "--quiet", "-b", "side", f"{v1}~0", cwd=work)
    await git("commit", "--quiet", "--allow-empty", "-m", "side", cwd=work)
    await git("tag", "--force", v1, cwd=work)
    await git("push", "--quiet", "--force", "bare", "side", f"refs/tags/{v1}", cwd=work)
    assert await source.is_ancestor("c00", v1, v3) is False
    assert await source.is_ancestor("c00", v2, v3) is True
    assert await source.is_ancestor("c00", v4, v3) is None  # no such tag: cannot say


async def test_a_tag_pushed_after_the_list_was_read_is_found(tmp_path: Path) -> None:
    work, url = await _repo(tmp_path)
    source = GitSource(_config(tmp_path, url, 1))  # default reuse: 15 s
    v1, _, v3, v4 = VERSIONS
    assert await source.is_ancestor("c00", v1, v3) is True
    await git("commit", "--quiet", "--allow-empty", "-m", v4, cwd=work)
    await git("tag", v4, cwd=work)
    await git("push", "--quiet", "bare", "main", f"refs/tags/{v4}", cwd=work)
    assert await source.is_ancestor("c00", v3, v4) is True
    assert await source.is_ancestor("c00", v4, v1) is False
