"""Shared fixtures: a demo-shaped config over real git repos."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.core.config import Config, load_config
from bot.demo.setup import prepare
from tests.support.session import free_port

# real PostgreSQL and OCI registry fixtures (`postgres`, `oci_registry`)
pytest_plugins = ["tests.support.pytest_plugin"]


@pytest.fixture
async def demo_config_path(tmp_path: Path) -> Path:
    """The demo's config and real git repos (control repo + component repos) in tmp."""
    return await prepare(tmp_path / "demo", listen=f"127.0.0.1:{free_port()}")


@pytest.fixture
async def demo_config(demo_config_path: Path) -> Config:
    return load_config(demo_config_path)
