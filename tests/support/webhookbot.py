"""The real App in-process with a console (its stdout is what reaches chat), spoken to over
HTTP on its real port: the bed of the webhook tests."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config, parse_config

FIXTURES = Path(__file__).parent / "fixtures" / "gitlab"
SECRET = "whsec-0123456789abcdef"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def config_with(path: Path, **sections: Any) -> Config:
    """The demo config at `path` with top-level sections replaced or added."""
    data = yaml.safe_load(path.read_text())
    data["monitors"] = {"enabled": False}  # no periodic checks: only webhook lines reach chat
    data.update(sections)
    return parse_config(data)


class RunningBot:
    """The real App with a console whose stdin stays open until the test ends."""

    def __init__(self, config: Config) -> None:
        self.config = config
        read_fd, self._write_fd = os.pipe()
        self._stdin = os.fdopen(read_fd)
        self.stdout = io.StringIO()
        self.app = App(config, console=ConsoleAdapter(self._stdin, self.stdout, user="tester"))
        self.base = f"http://{config.http.listen}"
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> RunningBot:
        await self.app.start()
        self.session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        os.close(self._write_fd)  # EOF on the console
        await self.app.stop()
        self._stdin.close()

    def say(self, line: str) -> None:
        """Type one line at the console (as the OS user `tester`)."""
        os.write(self._write_fd, (line + "\n").encode())

    async def post(
        self,
        body: dict[str, Any] | bytes,
        kind: str = "Pipeline Hook",
        token: str | None = SECRET,
        **headers: str,
    ) -> tuple[int, str]:
        assert self.session is not None
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", "X-Gitlab-Event": kind}
        if token is not None:
            sent["X-Gitlab-Token"] = token
        sent.update({k.replace("_", "-"): v for k, v in headers.items()})
        async with self.session.post(self.base + "/webhooks/gitlab", data=data, headers=sent) as r:
            return r.status, await r.text()

    async def settle(self) -> None:
        """Until every stored event was processed and every queued line printed."""
        assert await self.app.events.wait_idle(10), "event worker did not finish"
        assert await self.app.pipelines.wait_idle(20), "artifact look-ups did not finish"
        assert await self.app.services.outbox.flush(10), "outbox did not drain"

    def lines(self) -> list[str]:
        return self.stdout.getvalue().splitlines()

    async def wait_line(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines():
                if re.search(pattern, line):
                    return line
            await asyncio.sleep(0.01)
        raise AssertionError(f"no line matching {pattern!r}; got {self.lines()}")

    async def events(self) -> list[sqlite3.Row]:
        return await self.app.store.fetchall("SELECT * FROM events ORDER BY id")

    async def metrics(self) -> str:
        assert self.session is not None
        async with self.session.get(self.base + "/metrics") as r:
            return await r.text()


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == (f"{name}{{{want}}}" if want else name):
            return float(value)
    return 0.0
