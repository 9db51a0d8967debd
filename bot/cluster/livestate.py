"""Where live state comes from: the `Cluster` port that `!status` and the monitors read.

`bot.cluster.kube.KubeCluster` is the real implementation. `FileCluster` is the one for demos and
tests: an environment's `live_file` (YAML: Helm release name -> chart version) stands in for
a cluster, every listed release running one ready replica and no pods in trouble. This module
also says which namespace, release and chart name a component has in a cluster, and
remembers when each live version was first seen (the age `!status` shows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import yaml

from bot.cluster.helmrecords import ReleaseState
from bot.cluster.kube import ClusterError
from bot.cluster.workloads import (
    CHART_LABEL,
    INSTANCE_LABEL,
    DeploymentState,
    PodState,
    live_from_deployments,
)
from bot.config.model import Config, EnvironmentConfig
from bot.store.db import Store


class Cluster(Protocol):
    async def deployments(self, namespace: str) -> list[DeploymentState]: ...

    async def pods(self, namespace: str) -> list[PodState]: ...

    async def live_version(self, namespace: str, release: str, chart_name: str) -> str | None: ...

    async def release_state(self, namespace: str, release: str) -> ReleaseState | None: ...


@dataclass(frozen=True)
class Target:
    """Where a component runs in a cluster."""

    namespace: str
    release: str
    chart_name: str


def target_of(config: Config, component: str) -> Target:
    """Namespace, Helm release and chart name (each defaults to the component's name)."""
    comp = config.components[component]
    chart = (comp.chart or component).rstrip("/").rsplit("/", 1)[-1]
    return Target(comp.namespace or component, comp.release or component, chart)


class FileCluster:
    """Simulated live state from a YAML file, re-read on every call (for demos and tests)."""

    def __init__(self, path: Path, targets: Mapping[str, Target]) -> None:
        self.path = path
        self._by_namespace: dict[str, list[Target]] = {}
        for target in targets.values():
            self._by_namespace.setdefault(target.namespace, []).append(target)

    def _read(self) -> dict[str, str]:
        try:
            data = yaml.safe_load(self.path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ClusterError(f"live file {self.path.name}: {type(exc).__name__}") from None
        if not isinstance(data, dict):
            raise ClusterError(f"live file {self.path.name}: expected release: version lines")
        return {str(k): str(v) for k, v in data.items() if v is not None}

    async def deployments(self, namespace: str) -> list[DeploymentState]:
        live = self._read()
        out = []
        for t in self._by_namespace.get(namespace, []):
            if t.release in live:
                labels = {
                    INSTANCE_LABEL: t.release,
                    CHART_LABEL: f"{t.chart_name}-{live[t.release].replace('+', '_')}",
                }
                out.append(DeploymentState(t.release, 1, 1, 1, 1, 1, 1, labels))
        return out

    async def pods(self, namespace: str) -> list[PodState]:
        return []

    async def live_version(self, namespace: str, release: str, chart_name: str) -> str | None:
        return live_from_deployments(await self.deployments(namespace), release, chart_name)

    async def release_state(self, namespace: str, release: str) -> ReleaseState | None:
        return None  # a live file has no Helm records


def live_sources(config: Config, clusters: Mapping[str, Cluster]) -> dict[str, Cluster]:
    """Per environment: its cluster, else its `live_file`; environments with neither are
    absent (live state unknown)."""
    out: dict[str, Cluster] = {}
    targets: dict[str, Target] | None = None
    for env in config.environments:
        if env.name in clusters:
            out[env.name] = clusters[env.name]
        elif has_live_file(env):
            if targets is None:
                targets = {name: target_of(config, name) for name in config.components}
            out[env.name] = FileCluster(Path(str(env.live_file)).expanduser(), targets)
    return out


def has_live_file(env: EnvironmentConfig) -> bool:
    """The environment's live state comes from its `live_file` (it has no cluster)."""
    return bool(env.live_file) and env.kubeconfig is None and env.kube_context is None


def live_state_envs(config: Config, clusters: Mapping[str, Cluster]) -> set[str]:
    """The environments whose live state can be read: `live_sources` without making them."""
    return {e.name for e in config.environments if e.name in clusters or has_live_file(e)}


class LiveSeen:
    """The `live_seen` table: per component+env, the live version and when it was first seen."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def note(self, component: str, env: str, version: str, now: float) -> float:
        """Record an observation; return since when this version has been seen live."""
        row = await self.store.fetchone(
            "SELECT version, first_seen FROM live_seen WHERE component=? AND env=?",
            (component, env),
        )
        if row is not None and row["version"] == version:
            return float(row["first_seen"])
        await self.store.execute(
            "INSERT INTO live_seen (component, env, version, first_seen) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(component, env) DO UPDATE SET version=excluded.version,"
            " first_seen=excluded.first_seen",
            (component, env, version, now),
        )
        return now

    async def since(self, component: str, env: str, version: str) -> float | None:
        row = await self.store.fetchone(
            "SELECT first_seen FROM live_seen WHERE component=? AND env=? AND version=?",
            (component, env, version),
        )
        return float(row["first_seen"]) if row is not None else None

    async def all(self) -> dict[tuple[str, str], tuple[str, float]]:
        """(component, env) -> (version, first seen)."""
        rows = await self.store.fetchall(
            "SELECT component, env, version, first_seen FROM live_seen"
        )
        return {(r["component"], r["env"]): (r["version"], float(r["first_seen"])) for r in rows}
