"""A world for the status and monitor tests: the demo's real git repos, one FakeKube per
environment (reached through a real kubeconfig), and a FakeRegistry with every release's
image and chart pushed. Clusters start matching the pins: each test breaks what it needs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bot.app import App
from bot.config.model import Config, parse_config
from bot.core.git import git
from bot.core.versions import parse_version
from bot.demo.setup import prepare
from tests.support.fakes.kube import FakeKube
from tests.support.fakes.registry import FakeRegistry
from tests.support.oci_registry import OciRegistry
from tests.support.session import free_port

ENVS = ("toolsbeta", "tools")
CHARTS = "toolforge-charts"  # charts live in their own Harbor project here


@dataclass
class Clock:
    now: float

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    config: Config
    kubes: dict[str, FakeKube]
    registry: FakeRegistry
    releases: dict[str, list[str]]  # component -> release versions, oldest first
    pins: dict[tuple[str, str], str]  # (component, env) -> pinned version
    apps: list[App] = field(default_factory=list)

    def release_time(self, version: str) -> float:
        v = parse_version(version)
        assert v is not None and v.timestamp is not None
        return datetime.strptime(v.timestamp, "%Y%m%d%H%M%S").replace(tzinfo=UTC).timestamp()

    async def app(self) -> App:
        """An App over this world with its store open (not started: no loops running)."""
        app = App(self.config)
        await app.store.open()
        self.apps.append(app)
        return app

    async def outbox(self, app: App) -> list[str]:
        rows = await app.store.fetchall("SELECT text FROM outbox ORDER BY id")
        return [r["text"] for r in rows]


def kubeconfig(path: Path, kubes: dict[str, FakeKube]) -> Path:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": e, "cluster": {"server": k.url}} for e, k in kubes.items()],
        "users": [{"name": "bot", "user": {"token": "not-a-secret"}}],
        "contexts": [{"name": e, "context": {"cluster": e, "user": "bot"}} for e in kubes],
        "current-context": next(iter(kubes)),
    }
    path.write_text(yaml.safe_dump(doc))
    return path


async def _tags(repo: Path) -> list[str]:
    out = await git("tag", "--list", cwd=repo)
    found = [v for v in map(parse_version, out.split()) if v is not None]
    return [v.raw for v in sorted(found, key=lambda v: v.sort_key)]


@asynccontextmanager
async def world(
    tmp: Path, edit: Callable[[dict[str, Any]], None] | None = None
) -> AsyncIterator[World]:
    demo = tmp / "demo"
    data = yaml.safe_load((await prepare(demo, f"127.0.0.1:{free_port()}")).read_text())
    seed = yaml.safe_load((Path(__file__).parents[2] / "config/demo/seed.yaml").read_text())
    async with FakeKube() as beta, FakeKube() as prod, FakeRegistry() as registry:
        kubes = {"toolsbeta": beta, "tools": prod}
        path = kubeconfig(tmp / "kubeconfig", kubes)
        for env in data["environments"]:
            env.pop("live_file", None)
            env.update(kubeconfig=str(path), kube_context=env["name"])
        data["registry"] = {"url": registry.url, "kind": "harbor"}
        data["monitors"] = {"source_timeout": 2.0, "status_cache": 30.0}
        releases: dict[str, list[str]] = {}
        pins: dict[tuple[str, str], str] = {}
        for name, comp in data["components"].items():
            comp["chart"] = f"{CHARTS}/{name}"
            releases[name] = await _tags(demo / "git" / f"{name}.git")
            for version in releases[name]:
                registry.push(f"toolforge/{name}", version)
                registry.push(f"{CHARTS}/{name}", version)
            for env in ENVS:
                pinned = releases[name][-seed["components"][name]["pins"][env]]
                pins[(name, env)] = pinned
                kubes[env].add_deployment(name, name, chart=name, version=pinned)
                kubes[env].add_pdb(name, name, {"app.kubernetes.io/name": name})
        if edit is not None:
            edit(data)
        w = World(parse_config(data), kubes, registry, releases, pins)
        try:
            yield w
        finally:
            for app in w.apps:  # never started: close what the constructor opened
                if app.services.registry is not None:
                    await app.services.registry.close()
                for cluster in app.services.clusters.values():
                    await cluster.close()
                await app.store.close()


def on_real_registry(registry: OciRegistry) -> Callable[[dict[str, Any]], None]:
    """A `world` config hook: the real OCI registry, and no undeployed alerts (the tests
    using it look at artifacts)."""

    def change(data: dict[str, Any]) -> None:
        data["registry"] = {"url": registry.url, "kind": "oci"}
        data["monitors"].update(undeployed_after=10 * 365 * 86400)

    return change


def push_releases(w: World, registry: OciRegistry) -> None:
    """Every release's image and chart, pushed to the real registry."""
    for name, versions in w.releases.items():
        for version in versions:
            registry.push_manifest(f"toolforge/{name}", version)
            registry.push_chart(f"{CHARTS}/{name}", version)
