"""pytest fixtures for the real servers: `postgres` (PgServer) and `oci_registry` (OciRegistry).

Use from a test module with `pytest_plugins = ["tests.support.pytest_plugin"]`. Each fixture
starts one server per test in the test's tmp dir and always stops it. When the Debian
package is missing the test is skipped with the install command (failed under CI=true).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.oci_registry import OciRegistry, running_registry
from tests.support.postgres import PgServer, running_postgres


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PgServer]:
    """A fresh PostgreSQL: `postgres.url` is `postgresql://deploybot@127.0.0.1:PORT/deploybot`."""
    with running_postgres(tmp_path / "postgres") as server:
        yield server


@pytest.fixture
def oci_registry(tmp_path: Path) -> Iterator[OciRegistry]:
    """An empty OCI registry: `oci_registry.url` is `http://127.0.0.1:PORT`."""
    with running_registry(tmp_path) as registry:
        yield registry
