"""Shared fixtures: a demo-shaped config over real git repos, on the store engine under test.

A test module marked `pytestmark = pytest.mark.both_engines` runs each test that uses
`store_url` (directly or through `demo_config_path`) twice: on SQLite and on a real
PostgreSQL (one server per test session, a fresh database per test). A test marked
`postgresql_only` runs once, on PostgreSQL (what only a shared database can do).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml

from bot.config.model import Config, load_config
from bot.demo.setup import prepare
from tests.support.postgres import PgServer, running_postgres
from tests.support.session import free_port
from tests.support.xmppserver import ProsodyServer, running_prosody

# real PostgreSQL and OCI registry fixtures (`postgres`, `oci_registry`)
pytest_plugins = ["tests.support.pytest_plugin"]

ENGINES = ["sqlite", "postgresql"]
_databases = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_engines: run store-using tests on SQLite and PostgreSQL"
    )
    config.addinivalue_line("markers", "postgresql_only: run a store-using test on PostgreSQL")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "engine" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("postgresql_only"):
        metafunc.parametrize("engine", ["postgresql"], indirect=True)
    elif metafunc.definition.get_closest_marker("both_engines"):
        metafunc.parametrize("engine", ENGINES, indirect=True)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """One real PostgreSQL for the whole session (tests get their own database)."""
    with running_postgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def store_url(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A store URL for this test: a SQLite file in tmp, or a fresh PostgreSQL database."""
    if engine == "sqlite":
        return f"sqlite:///{tmp_path / 's.sqlite3'}"
    server: PgServer = request.getfixturevalue("pg_server")
    name = f"t{next(_databases)}"
    server.create_database(name)
    return server.url_for(name)


@pytest.fixture
async def demo_config_path(tmp_path: Path, engine: str, request: pytest.FixtureRequest) -> Path:
    """The demo's config and real git repos (control repo + component repos) in tmp; on
    PostgreSQL when the test runs on that engine."""
    path = await prepare(tmp_path / "demo", listen=f"127.0.0.1:{free_port()}")
    if engine != "sqlite":
        data = yaml.safe_load(path.read_text())
        data["store"] = {"url": request.getfixturevalue("store_url")}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
async def demo_config(demo_config_path: Path) -> Config:
    return load_config(demo_config_path)


@pytest.fixture
async def prosody(tmp_path: Path) -> AsyncIterator[ProsodyServer]:
    """A real Prosody on loopback (XMPP tests; skips locally, fails under CI when missing)."""
    async with running_prosody(tmp_path / "prosody") as server:
        yield server
