"""A free loopback port, and a whole console session of the real app in-process."""

from __future__ import annotations

import io
import socket

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
