"""The real helm binary for the chart tests, and `helm template` / `helm lint` runners.

helm comes from `make helm-bins` (tools/install-helm.py into .venv/bin). Without it the
tests skip locally, with the install command in the reason, and fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "chart" / "deploybot"
INSTALL = "make helm-bins  (or: python3 tools/install-helm.py --bin-dir .venv/bin)"
RELEASE = "bot"
NAMESPACE = "deploybot-ns"
FAKES = ROOT / "tests" / "bin"  # recording stand-ins for deploy tests: never use these


def _is_real_helm3(path: Path) -> bool:
    if not (path.is_file() and os.access(path, os.X_OK)) or path.parent.resolve() == FAKES:
        return False
    try:
        out = subprocess.run(
            [str(path), "version", "--short"], capture_output=True, text=True, timeout=30
        )
    except OSError:
        return False
    return out.returncode == 0 and out.stdout.startswith("v3.")


def find_tool(name: str) -> Path | None:
    candidates = [Path(sys.executable).parent / name, ROOT / ".venv" / "bin" / name]
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    for c in candidates:
        if name != "helm" and c.is_file() and os.access(c, os.X_OK) and c.parent != FAKES:
            return c
        if name == "helm" and _is_real_helm3(c):
            return c
    return None


def require(name: str) -> Path:
    path = find_tool(name)
    if path is None:
        message = f"real {name} not found in .venv/bin or PATH; install it with: {INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Helm:
    binary: Path
    home: Path  # HELM_*_HOME: nothing is written to the user's home

    def run(self, *args: str | Path) -> subprocess.CompletedProcess[str]:
        env = dict(
            os.environ,
            HELM_CACHE_HOME=str(self.home / "cache"),
            HELM_CONFIG_HOME=str(self.home / "config"),
            HELM_DATA_HOME=str(self.home / "data"),
            KUBECONFIG=str(self.home / "no-kubeconfig"),
        )
        return subprocess.run(
            [str(self.binary), *map(str, args)], capture_output=True, text=True, env=env, timeout=60
        )

    def values_args(self, values: dict[str, Any] | None) -> list[str]:
        if not values:
            return []
        with tempfile.NamedTemporaryFile(
            "w", dir=self.home, prefix="values-", suffix=".yaml", delete=False
        ) as f:
            yaml.safe_dump(values, f)
        return ["-f", f.name]

    def template_result(
        self, values: dict[str, Any] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return self.run(
            "template", RELEASE, CHART, "--namespace", NAMESPACE, *self.values_args(values)
        )

    def template(self, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Render and parse; fail the test with helm's message if rendering fails."""
        result = self.template_result(values)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    def lint(self, values: dict[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
        return self.run(
            "lint", "--strict", CHART, "--namespace", NAMESPACE, *self.values_args(values)
        )


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if name is None or d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]
