"""The cluster clients are made while the app starts (`KubeCluster.warm`), in its background:
a kubeconfig's auth plugin has run before anyone asks for `!status`; a slow one does not hold
the start, and the first call waits for the client it makes (one client, one plugin run)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import Config, parse_config
from tests.support.fakes.kube import FakeKube
from tests.support.session import free_port

PLUGIN = """
import json, pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text("ran")
go = pathlib.Path(sys.argv[2])  # a slow plugin (a login): it answers once this file exists
deadline = time.monotonic() + 20
while sys.argv[2] and not go.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential", "status": {"token": "plugin-token"}}))
"""


def config_with_plugin(tmp_path: Path, url: str, go: str = "") -> tuple[Path, Config]:
    marker = tmp_path / "plugin-ran"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "tools", "cluster": {"server": url}}],
        "users": [{"name": "bot", "user": {"exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable, "args": ["-c", PLUGIN, str(marker), go],
        }}}],
        "contexts": [{"name": "tools", "context": {"cluster": "tools", "user": "bot"}}],
        "current-context": "tools",
    }))  # fmt: skip
    config = parse_config({
        "bot": {"state_dir": str(tmp_path / "var")},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "chat": {"console": {}},
        "monitors": {"enabled": False},
        "environments": [{"name": "tools", "kubeconfig": str(kubeconfig), "kube_context": "tools"}],
        "components": {"builds-api": {"project": "toolforge/builds-api"}},
    })  # fmt: skip
    return marker, config


async def ran(marker: Path, within: float = 15.0) -> bool:
    deadline = asyncio.get_running_loop().time() + within
    while not marker.exists():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)  # polling a file another process writes
    return True


async def test_the_auth_plugin_runs_while_the_app_starts_not_at_the_first_command(
    tmp_path: Path,
) -> None:
    async with FakeKube() as kube:
        marker, config = config_with_plugin(tmp_path, kube.url)
        app = App(config, console=ConsoleAdapter(io.StringIO(""), io.StringIO(), user="t"))
        await app.start()
        try:
            assert await ran(marker), "the kubeconfig's auth plugin did not run at start"
            assert kube.requests == []  # nothing asked the cluster: the start made the client
        finally:
            await app.stop()


async def test_a_slow_auth_plugin_does_not_hold_the_start_and_the_client_waits_for_it(
    tmp_path: Path,
) -> None:
    go = tmp_path / "go"
    async with FakeKube() as kube:
        kube.add_deployment("builds-api", "builds-api", chart="builds-api", version="0.0.1")
        marker, config = config_with_plugin(tmp_path, kube.url, str(go))
        app = App(config, console=ConsoleAdapter(io.StringIO(""), io.StringIO(), user="t"))
        await app.start()  # returns while the plugin still waits
        try:
            assert await ran(marker)
            asked = asyncio.ensure_future(app.services.clusters["tools"].deployments("builds-api"))
            await asyncio.sleep(0.2)  # the call has had time to go out, had it not waited
            assert not asked.done() and kube.requests == []
            go.write_text("")
            assert [d.name for d in await asyncio.wait_for(asked, 15)] == ["builds-api"]
        finally:
            await app.stop()
