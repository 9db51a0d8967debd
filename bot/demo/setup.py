"""`deploybot demo`: the real bot on embedded defaults, with no server, token or cluster.

Creates `.deploybot-demo/` from `config/demo/`: bare git repos for the control repo and the
component repos (with release tags in the CI version format, computed from the real
commits), a config pointing at them, then runs the bot with the console chat.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.app import App
from bot.config.model import load_config
from bot.control.pins import pin_file_candidates, replace_pin
from bot.core.git import git

DEMO_NOTE = "demo: nothing is deployed to a cluster (its deploy commands print what they would run)"

EPOCH = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)


def demo_source() -> Path:
    """The demo's files, shipped inside the package (`config/demo` in a checkout links here)."""
    source = Path(__file__).resolve().parent / "data"
    if not (source / "deploybot.yaml").exists():
        raise SystemExit(f"the demo's files are missing from the installation ({source})")
    return source


def _fast_import_stream(name: str, commits: int) -> bytes:
    """A `git fast-import` stream of `commits` commits on main with fixed dates and authors."""
    out = []
    for n in range(1, commits + 1):
        when = int((EPOCH + timedelta(hours=n)).timestamp())
        body = f"{name} change {n}\n".encode()
        msg = f"{name}: change {n}\n".encode()
        out.append(b"commit refs/heads/main\n")
        out.append(f"committer Demo Dev <dev@example.org> {when} +0000\n".encode())
        out.append(b"data %d\n%s" % (len(msg), msg))
        out.append(b"M 644 inline CHANGES\ndata %d\n%s\n" % (len(body), body))
    return b"".join(out)


async def _component_repo(path: Path, name: str, commits: int, releases: int) -> list[str]:
    """Create a bare repo with history and release tags; return versions oldest first."""
    await git("init", "--quiet", "--bare", "--initial-branch=main", str(path))
    stream = path / "import.stream"
    stream.write_bytes(_fast_import_stream(name, commits))
    await _fast_import(path, stream)
    stream.unlink()
    shas = (await git("rev-list", "--reverse", "main", cwd=path)).split()
    versions = []
    for n in range(commits - releases + 1, commits + 1):
        sha = shas[n - 1]
        stamp = (EPOCH + timedelta(hours=n, minutes=7)).strftime("%Y%m%d%H%M%S")
        version = f"0.0.{n}-{stamp}-{sha[:8]}"
        await git("tag", version, sha, cwd=path)
        versions.append(version)
    return versions


async def _fast_import(repo: Path, stream: Path) -> None:
    with stream.open("rb") as fh:
        proc = await asyncio.create_subprocess_exec(
            "git", "fast-import", "--quiet", cwd=repo, stdin=fh,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
    if proc.returncode:
        raise SystemExit(f"git fast-import failed: {err.decode(errors='replace')[-200:]}")


async def _control_repo(src: Path, bare: Path, pins: dict[str, dict[str, str]]) -> None:
    """Commit the control-repo tree with the generated pins into a bare repo."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(src, work)
        for component, by_env in pins.items():
            for env, version in by_env.items():
                for rel in pin_file_candidates("components/{component}/values/{env}.yaml",
                                               component, env):  # fmt: skip
                    f = work / rel
                    if f.exists():
                        f.write_bytes(
                            replace_pin(f.read_bytes().decode(), "chartVersion", version).encode()
                        )
                        break
        await git("init", "--quiet", "--initial-branch=main", str(work))
        await git("add", "-A", cwd=work)
        await git("commit", "--quiet", "-m", "Initial import of the deployment control repo",
                  cwd=work)  # fmt: skip
        await git("clone", "--quiet", "--bare", str(work), str(bare))


async def prepare(demo_dir: Path, listen: str | None = None) -> Path:
    """Create the demo directory once (kept between runs); return its config path."""
    demo_dir = demo_dir.resolve()
    config_path = demo_dir / "deploybot.yaml"
    if config_path.exists():
        if listen:  # --listen always wins, also over a demo directory made before
            config_path.write_text(_listen_on(config_path.read_text(), listen))
        return config_path
    src = demo_source()
    seed: dict[str, Any] = yaml.safe_load((src / "seed.yaml").read_text())
    gitdir = demo_dir / "git"
    gitdir.mkdir(parents=True, exist_ok=True)
    pins: dict[str, dict[str, str]] = {}
    live: dict[str, dict[str, str]] = {}
    history: dict[str, dict[str, list[str]]] = {}  # simulated Helm history per env
    for name, spec in seed["components"].items():
        versions = await _component_repo(
            gitdir / f"{name}.git", name, spec["commits"], spec["releases"]
        )
        pins[name] = {env: versions[-idx] for env, idx in spec["pins"].items()}
        for env, idx in spec.get("live", {}).items():  # simulated live state (live_file)
            live.setdefault(env, {})[name] = versions[-idx]
            history.setdefault(env, {})[name] = versions[-idx - 1 : len(versions) - idx + 1]
    await _control_repo(src / "control-repo", gitdir / "toolforge-deploy.git", pins)
    (demo_dir / "live").mkdir(exist_ok=True)
    for env, running in live.items():
        (demo_dir / "live" / f"{env}.yaml").write_text(yaml.safe_dump(running))
        (demo_dir / "live" / f"{env}.history.yaml").write_text(yaml.safe_dump(history[env]))
    text = (src / "deploybot.yaml").read_text().replace("@DEMO_DIR@", str(demo_dir))
    text = text.replace("@PYTHON@", sys.executable)  # the demo deploy command's interpreter
    if listen:
        text = _listen_on(text, listen)
    config_path.write_text(text)
    return config_path


def _listen_on(text: str, listen: str) -> str:
    """The demo config with its webhook server (and the links it posts) on `listen`."""
    text = re.sub(r"(?m)^(\s+listen: )\S+", lambda m: m.group(1) + listen, text, count=1)
    return re.sub(
        r"(?m)^(\s+public_url: )\S+", lambda m: f"{m.group(1)}http://{listen}", text, count=1
    )


async def run_demo(demo_dir: Path, listen: str | None = None) -> int:
    logging.getLogger().setLevel(logging.WARNING)
    config = load_config(await prepare(demo_dir, listen))
    print(
        f"deploybot demo: console chat as you; type !help (Ctrl-D to quit). {DEMO_NOTE}. "
        f"State in {demo_dir}/, board on http://{config.http.listen}/status, webhooks on"
        f" http://{config.http.listen}/webhooks/gitlab",
        flush=True,
    )
    await App(config).run()
    return 0
