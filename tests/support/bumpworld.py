"""Real git repositories for the bump tests: a control repo laid out like toolforge-deploy
(from tests/fixtures/control_repo) and component repos with CI-style release tags."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config.model import Config, parse_config
from bot.core.git import git
from tests.support.session import free_port

FIXTURE = Path(__file__).parent / "fixtures" / "control_repo"


@dataclass
class Repos:
    control: Path  # bare repo
    control_url: str
    components: dict[str, Path]  # bare repos
    releases: dict[str, list[tuple[str, str]]]  # component -> [(version, sha)], oldest first


async def bare_from_tree(src: Path, bare: Path, work: Path) -> None:
    shutil.copytree(src, work)
    await git("init", "--quiet", "--initial-branch=main", str(work))
    await git("add", "-A", cwd=work)
    await git("commit", "--quiet", "-m", "Initial import", cwd=work)
    await git("clone", "--quiet", "--bare", str(work), str(bare))
    shutil.rmtree(work)


async def component_repo(
    bare: Path, work: Path, name: str, commits: int, first_n: int, releases: int
) -> list[tuple[str, str]]:
    """A bare repo with `commits` commits on main; the last `releases` are release-tagged."""
    await git("init", "--quiet", "--initial-branch=main", str(work))
    out = []
    for i in range(commits):
        n = first_n + i
        (work / "CHANGES").write_text(f"{name} change {n}\n")
        await git("add", "CHANGES", cwd=work)
        await git("commit", "--quiet", "-m", f"{name}: change {n}", cwd=work)
        if i >= commits - releases:
            sha = (await git("rev-parse", "HEAD", cwd=work)).strip()
            version = f"0.0.{n}-202402{10 + i:02d}120000-{sha[:8]}"
            await git("tag", version, cwd=work)
            out.append((version, sha))
    await git("clone", "--quiet", "--bare", str(work), str(bare))
    return out


_TEMPLATE: list[tuple[Path, Repos]] = []  # built once per test process, copied per test


async def make_repos(tmp: Path) -> Repos:
    """The repositories under `tmp/git`, copied from this process's template (built on the
    first call: about 80 git processes)."""
    if not _TEMPLATE:
        where = Path(tempfile.mkdtemp(prefix="bumpworld-"))
        atexit.register(shutil.rmtree, where, ignore_errors=True)
        _TEMPLATE.append((where, await _build_repos(where)))
    where, made = _TEMPLATE[0]
    shutil.copytree(where / "git", tmp / "git", symlinks=True)
    control = tmp / "git" / made.control.name
    comps = {name: tmp / "git" / path.name for name, path in made.components.items()}
    releases = {name: list(tags) for name, tags in made.releases.items()}
    return Repos(control, f"file://{control}", comps, releases)


async def _build_repos(tmp: Path) -> Repos:
    control = tmp / "git" / "toolforge-deploy.git"
    await bare_from_tree(FIXTURE, control, tmp / "work-control")
    comps: dict[str, Path] = {}
    releases: dict[str, list[tuple[str, str]]] = {}
    for name, first in (("builds-api", 130), ("jobs-api", 410), ("logging", 20)):
        comps[name] = tmp / "git" / f"{name}.git"
        releases[name] = await component_repo(comps[name], tmp / f"work-{name}", name, 6, first, 4)
    return Repos(control, f"file://{control}", comps, releases)


def base_config(
    tmp: Path, control: dict[str, Any], components: dict[str, dict[str, Any]], **extra: Any
) -> Config:
    data: dict[str, Any] = {
        "bot": {"state_dir": str(tmp / "var"), "public_url": "http://127.0.0.1:9"},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "chat": {"console": {}},
        "control_repo": control,
        "environments": [
            {"name": "local", "sal_project": "local"},
            {"name": "toolsbeta", "sal_project": "toolsbeta"},
            {"name": "tools", "sal_project": "tools", "requires": "toolsbeta"},
        ],
        "components": components,
        # these tests assert exact chat lines and forge requests: no background monitor checks
        "monitors": {"enabled": False},
        "auth": {
            "rules": [
                {"who": ["console:tester"], "role": "deployer"},
                {"who": ["console:betaonly"], "role": "deployer", "environments": ["toolsbeta"]},
            ]
        },
    }
    data.update(extra)
    return parse_config(data)


LOGGING_PINS = [
    {"file": "components/{component}/values/{env}.yaml", "key": "loki.chartVersion"},
    {"file": "components/{component}/values/{env}.yaml", "key": "alloy.chartVersion"},
]


def git_config(tmp: Path, repos: Repos, **extra: Any) -> Config:
    comps: dict[str, dict[str, Any]] = {
        name: {"repo_url": f"file://{path}"} for name, path in repos.components.items()
    }
    comps["logging"]["pins"] = LOGGING_PINS
    return base_config(tmp, {"forge": "git", "url": repos.control_url}, comps, **extra)


async def remote_file(bare: Path, path: str, ref: str = "main") -> str:
    return await git("show", f"{ref}:{path}", cwd=bare)


async def remote_head(bare: Path, ref: str = "main") -> str:
    return (await git("rev-parse", ref, cwd=bare)).strip()
