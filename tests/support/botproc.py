"""`deploybot run -c` as a real subprocess, for end-to-end tests and benchmarks.

`BotProcess` writes a config (state dir and HTTP port filled in, in a temp dir), starts
`python -m bot.cli run -c <path>` with its log captured to a file, polls `/ready` with a
deadline, posts webhooks, reads the SAL through `deploybot sal -c`, and stops the process
with SIGTERM (SIGKILL after a deadline) or kills it outright. Only its own PID is signalled.
`pipeline_hook` builds the GitLab Pipeline Hook bodies the tests and benchmarks post to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from tests.support.real import deploybot, real

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[2]
PIPELINE_TEMPLATE = (
    ROOT / "tests" / "support" / "fixtures" / "gitlab" / "pipeline_running_stage2.json"
)
FINAL_STATUSES = ("success", "failed", "canceled")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pipeline_hook(
    pipeline_id: int,
    status: str,
    stage: int = 1,
    *,
    stages: tuple[str, ...] = ("build", "test", "publish"),
    ref: str = "main",
    title: str | None = None,
) -> dict[str, Any]:
    """A Pipeline Hook body shaped like GitLab's (from the builds-api fixture).

    `stage` (1-based) is the stage whose job is running (or failed/canceled when `status` is);
    earlier stages succeeded, later ones are still `created`. A `success` pipeline has every
    job succeeded.
    """
    body: dict[str, Any] = json.loads(PIPELINE_TEMPLATE.read_text())
    attrs = body["object_attributes"]
    old_url = attrs["url"]
    final = status in FINAL_STATUSES
    attrs.update(
        id=pipeline_id,
        iid=pipeline_id % 100000,
        status=status,
        detailed_status=status,
        ref=ref,
        stages=list(stages),
        duration=60 + pipeline_id % 600 if final else None,
        url=old_url.rsplit("/", 1)[0] + f"/{pipeline_id}",
    )
    if title is not None:
        body["commit"]["title"] = title
        body["commit"]["message"] = title
    template_job = body["builds"][0]
    builds = []
    for index, name in enumerate(stages, start=1):
        if status == "success" or index < stage:
            job_status = "success"
        elif index == stage:
            job_status = status if final else "running"
        else:
            job_status = "created"
        builds.append(
            {**template_job, "id": pipeline_id * 100 + index, "stage": name,
             "name": f"{name}-job", "status": job_status}
        )  # fmt: skip
    body["builds"] = builds
    return body


class BotExited(RuntimeError):
    """The bot process ended while a test expected it to run."""


@real
class BotProcess:
    """One `deploybot run` subprocess over a config written into `directory`."""

    def __init__(
        self, directory: Path, config: Mapping[str, Any], env: Mapping[str, str] | None = None
    ) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        data = json.loads(json.dumps(config))  # a deep copy of plain data
        data.setdefault("bot", {})["state_dir"] = str(self.dir / "var")
        data.setdefault("http", {})["listen"] = f"{HOST}:{self.port}"
        self.config = data
        self.config_path = self.dir / "deploybot.yaml"
        self.config_path.write_text(yaml.safe_dump(data, sort_keys=False))
        self.log_path = self.dir / "bot.log"
        self._env = {**os.environ, **(env or {})}
        self._proc: asyncio.subprocess.Process | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, within: float = 60.0, expect: int = 200, *, stdin: bool = False) -> None:
        """Start the bot and wait until `/ready` answers `expect` (200: chat connected and
        every room joined; 503 for a bot that cannot be in all its rooms yet). `stdin`: keep
        a pipe to its stdin open, for a `chat.console` config (`type`)."""
        argv = [*deploybot(), "run", "-c", str(self.config_path)]
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=ROOT,
                env=self._env,
                stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        await self.wait_ready(expect, within)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise BotExited("the bot was not started")
        return self._http

    async def ready_status(self) -> int | None:
        """The HTTP status of `/ready`, or None while nothing answers on the port."""
        return (await self.ready())[0]

    async def ready(self) -> tuple[int | None, str]:
        """The status and body of `/ready` ((None, "") while nothing answers on the port)."""
        try:
            async with self._session().get(self.url + "/ready") as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError):
            return None, ""

    async def wait_ready(self, status: int, within: float) -> None:
        """Poll `/ready` until it answers `status`; fail if the process dies or time runs out."""
        deadline = time.monotonic() + within
        seen: int | None = None
        while time.monotonic() < deadline:
            if not self.running:
                raise BotExited(f"deploybot exited ({self.returncode}):\n{self.log_tail()}")
            seen = await self.ready_status()
            if seen == status:
                return
            await asyncio.sleep(0.1)  # polling another process's HTTP endpoint
        raise TimeoutError(
            f"/ready did not answer {status} within {within}s (last: {seen})\n{self.log_tail()}"
        )

    async def post_webhook(
        self, body: Any, kind: str = "Pipeline Hook", headers: Mapping[str, str] | None = None
    ) -> int:
        """POST a GitLab webhook; return the HTTP status."""
        async with self._session().post(
            self.url + "/webhooks/gitlab",
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "X-Gitlab-Event": kind, **(headers or {})},
        ) as resp:
            await resp.read()
            return resp.status

    async def type(self, line: str) -> None:
        """Type one line into the bot's console (started with `stdin=True`)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise BotExited("the bot was not started with stdin=True")
        proc.stdin.write(line.encode() + b"\n")
        await proc.stdin.drain()

    async def metric(self, name: str, labels: str = "") -> float:
        """The sum of a Prometheus sample's values from `/metrics` (0 if absent)."""
        async with self._session().get(self.url + "/metrics") as resp:
            text = await resp.text()
        pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.M)
        return sum(float(m[2]) for m in pattern.finditer(text) if labels in (m[1] or ""))

    async def wait_metric(
        self, name: str, labels: str, at_least: float, within: float = 10.0
    ) -> float:
        """Poll `/metrics` until the sample reaches `at_least`; return its value."""
        deadline = time.monotonic() + within
        value = 0.0
        while time.monotonic() < deadline:
            value = await self.metric(name, labels)
            if value >= at_least:
                return value
            await asyncio.sleep(0.05)  # polling another process's HTTP endpoint
        raise TimeoutError(f"{name}{{{labels}}} stayed at {value} < {at_least} for {within}s")

    async def sal_entries(self) -> list[dict[str, Any]]:
        """The SAL as `deploybot sal -c <config> --json` prints it (oldest first)."""
        proc = await asyncio.create_subprocess_exec(
            *deploybot(), "sal", "-c", str(self.config_path), "--json",
            cwd=ROOT, env=self._env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        if proc.returncode != 0:
            raise RuntimeError(f"deploybot sal failed: {err.decode(errors='replace')}")
        return [json.loads(line) for line in out.decode().splitlines() if line.strip()]

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_text()[-chars:]

    async def wait_log(self, pattern: str, within: float, since: int = 0) -> re.Match[str]:
        """Poll the captured log (from character `since`) for a regex; return the match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            found = regex.search(self.log_text(), since)
            if found:
                return found
            if not self.running:
                raise BotExited(f"deploybot exited ({self.returncode}):\n{self.log_tail()}")
            await asyncio.sleep(0.05)  # polling a file another process writes
        raise TimeoutError(f"no log line matching {pattern!r} within {within}s")

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    async def stop(self, within: float = 20.0) -> int | None:
        """SIGTERM, wait up to `within` s for a clean exit, then SIGKILL; return the exit code."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), timeout=within)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        await self._close_http()
        return proc.returncode if proc is not None else None

    async def kill(self) -> None:
        """SIGKILL the bot (a crash), and reap it."""
        proc = self._proc
        if proc is not None and proc.returncode is None:
            proc.kill()
            await proc.wait()
        await self._close_http()

    async def _close_http(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
