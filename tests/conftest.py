"""Shared fixtures: a demo-shaped config over real git repos, and an in-process console session."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import pytest

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.core.config import Config, load_config
from bot.demo.setup import prepare


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def demo_config_path(tmp_path: Path) -> Path:
    """The demo's config and real git repos (control repo + component repos) in tmp."""
    return await prepare(tmp_path / "demo", listen=f"127.0.0.1:{free_port()}")


@pytest.fixture
async def demo_config(demo_config_path: Path) -> Config:
    return load_config(demo_config_path)


async def console_session(config: Config, lines: list[str], user: str = "tester") -> list[str]:
    """Run the real app with the console adapter over `lines`; return what it printed."""
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    stdout = io.StringIO()
    app = App(config, console=ConsoleAdapter(stdin, stdout, user=user))
    await app.start()
    try:
        await app.wait()
    finally:
        await app.stop()
    return stdout.getvalue().splitlines()
