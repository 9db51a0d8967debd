"""A deploy test bed: the demo's git repos, FakeKube behind a real kubeconfig, a real OCI
registry (Debian's `docker-registry`, the `oci_registry` fixture) and the recording
helmfile/helm (tests/bin) first on PATH.

`DeployBed.run(lines, user)` runs the real App over console lines as `console:<user>`, waits
until every line was handled and the outbox is flushed, then returns what was printed, the
SAL and the deploy rows, and lets the test look at the running app (its HTTP server) first.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config, parse_config
from bot.core.git import git
from bot.store.sal import SalEntry
from tests.support.fakes.kube import FakeKube
from tests.support.oci_registry import OciRegistry
from tests.support.session import free_port
from tests.support.shown import said, shown

BIN = Path(__file__).parent / "bin"
NS = "builds-api"
IMAGE = "toolforge/builds-api"
CHART = "toolforge-charts/builds-api"


@dataclass
class Session:
    out: list[str]
    sal: list[SalEntry]  # oldest first
    deploys: list[dict[str, Any]]  # oldest first


@dataclass
class DeployBed:
    tmp: Path
    data: dict[str, Any]  # the config as YAML data
    kube: FakeKube
    registry: OciRegistry
    record: Path
    control_file: Path
    control_repo: Path  # bare
    releases: list[str]  # builds-api release versions, oldest first
    pins: dict[str, str]  # env -> builds-api version pinned on main at the start

    @property
    def config(self) -> Config:
        return parse_config(self.data)

    def records(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def script(self, behaviour: dict[str, dict[str, Any]]) -> None:
        """What the fake helmfile/helm does per "<tool> <subcommand>"."""
        self.control_file.write_text(json.dumps(behaviour))

    async def on_sync(
        self, act: Callable[[], None], within: float = 20.0, *, sub: str = "apply", nth: int = 1
    ) -> None:
        """When the `nth` (scripted: "ack") helmfile sync (or other `sub`) runs: `act()` on
        the fake cluster, as the real command would change it, then let it finish."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            runs = [c for c in self.records() if c["sub"] == sub]
            if len(runs) >= nth:
                act()
                Path(f"{self.record}.ack-{runs[nth - 1]['pid']}").touch()
                return
            await asyncio.sleep(0.02)  # polling another process's output file
        raise TimeoutError(f"{sub} #{nth} did not run")

    def push(self, version: str, *, image: bool = True, chart: bool = True) -> None:
        if image:
            self.registry.push_manifest(IMAGE, version)
        if chart:
            self.registry.push_chart(CHART, version)

    async def main_head(self) -> str:
        return (await git("rev-parse", "main", cwd=self.control_repo)).strip()

    async def run(
        self,
        lines: list[str],
        user: str = "alice",
        inspect: Callable[[App], Awaitable[None]] | None = None,
        stdout: io.StringIO | None = None,
    ) -> Session:
        """Type `lines` on the console as `user`; the session once every line was answered.
        `stdout`: the console's output while it runs (a test reading lines as they come)."""
        stdin = io.StringIO("".join(line + "\n" for line in lines))
        stdout = stdout if stdout is not None else io.StringIO()
        app = App(self.config, console=ConsoleAdapter(stdin, stdout, user=user))
        await app.start()
        try:
            console = app.console
            assert console is not None
            await console.finished.wait()
            assert await app.services.outbox.flush(timeout=20)
            if inspect is not None:
                await inspect(app)
            sal = list(reversed(await app.services.sal.query(limit=500)))
            rows = await app.store.fetchall("SELECT * FROM deploys ORDER BY id")
        finally:
            await app.stop()
        return Session(stdout.getvalue().splitlines(), sal, [dict(r) for r in rows])


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": url}}],
                "users": [{"name": "deploybot", "user": {"token": "fake-token"}}],
                "contexts": [
                    {"name": "toolsbeta", "context": {"cluster": "fake", "user": "deploybot"}}
                ],
                "current-context": "toolsbeta",
            }
        )
    )
    return path


async def _releases(bare: Path) -> list[str]:
    tags = (await git("tag", "--list", cwd=bare)).split()
    return sorted(tags, key=lambda t: int(t.split(".")[2].split("-")[0]))


async def make_bed(
    tmp: Path, demo_config_path: Path, monkeypatch: pytest.MonkeyPatch, registry: OciRegistry
) -> AsyncIterator[DeployBed]:
    """The bed over the demo's repos (see the module docstring)."""
    data: dict[str, Any] = yaml.safe_load(demo_config_path.read_text())
    demo_dir = demo_config_path.parent
    async with FakeKube() as kube:
        port = free_port()
        data["http"] = {"listen": f"127.0.0.1:{port}"}
        data["bot"]["public_url"] = f"http://127.0.0.1:{port}"
        data.pop("demo", None)
        data["monitors"] = {"enabled": False}  # their alerts are not what these tests look at
        data["deploy"] = {"timeout": 30, "rollout_timeout": 5}
        # a secret in the bot's environment must not reach deploy commands
        monkeypatch.setenv("FAKE_SECRET", "s3cr3t-registry-password")
        data["registry"] = {
            "url": registry.url,
            "kind": "oci",
            "username": "bot",
            "password_env": "FAKE_SECRET",
        }
        envs = {e["name"]: e for e in data["environments"]}
        envs["toolsbeta"]["kubeconfig"] = str(kubeconfig(tmp / "kubeconfig", kube.url))
        envs["toolsbeta"]["kube_context"] = "toolsbeta"
        data["components"]["builds-api"]["chart"] = CHART
        data["auth"] = {
            "rules": [
                {"who": ["console:alice"], "role": "admin"},
                {"who": ["console:carol"], "role": "deployer"},
                {"who": ["console:bob"], "role": "deployer", "environments": ["toolsbeta"]},
            ]
        }
        control_repo = demo_dir / "git" / "toolforge-deploy.git"
        pins = {}
        for env in ("toolsbeta", "tools"):
            text = await git(
                "show", f"main:components/builds-api/values/{env}.yaml", cwd=control_repo
            )
            pins[env] = text.split("chartVersion:", 1)[1].split()[0]
        record, control_file = tmp / "helm-calls.jsonl", tmp / "helm-control.json"
        monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
        monkeypatch.setenv("FAKE_HELM_RECORD", str(record))
        monkeypatch.setenv("FAKE_HELM_CONTROL", str(control_file))
        yield DeployBed(
            tmp, data, kube, registry, record, control_file, control_repo,
            await _releases(demo_dir / "git" / "builds-api.git"), pins,
        )  # fmt: skip


@pytest.fixture
async def bed(
    tmp_path: Path,
    demo_config_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    oci_registry: OciRegistry,
) -> AsyncIterator[DeployBed]:
    async for b in make_bed(tmp_path, demo_config_path, monkeypatch, oci_registry):
        yield b


async def deploy_latest(bed: DeployBed) -> tuple[str, str]:
    """`!deploy builds-api latest to toolsbeta` (auto-applied there): previous -> latest."""
    previous, latest = bed.pins["toolsbeta"], bed.releases[-1]
    bed.push(previous)
    bed.push(latest)
    bed.kube.add_deployment(NS, "builds-api", chart="builds-api", version=previous)
    bed.script({"helmfile apply": {"ack": True}, "helm rollback": {"ack": True}})
    rollout = asyncio.create_task(
        bed.on_sync(lambda: bed.kube.start_rollout(NS, "builds-api", version=latest))
    )
    s = await bed.run(["!deploy builds-api latest to toolsbeta"])
    await rollout
    assert said(s.out)[-1].startswith(f"deploy #1 done: builds-api {shown(latest)} to toolsbeta")
    return previous, latest
