"""Shared fixtures: a demo-shaped config over real git repos, on the store engine under test.

A test module marked `pytestmark = pytest.mark.both_engines` runs each test that uses
`store_url` (directly or through `demo_config_path`) twice: on SQLite and on a real
PostgreSQL (one server per test session, a fresh database per test). A test marked
`postgresql_only` runs once, on PostgreSQL (what only a shared database can do).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

from bot.config.model import Config, load_config
from bot.demo.setup import prepare
from bot.store.db import Store
from tests.support.postgres import PgServer, running_postgres
from tests.support.real import reaches_real
from tests.support.session import free_port
from tests.support.xmppserver import ProsodyServer, running_prosody

# real PostgreSQL and OCI registry fixtures (`postgres`, `oci_registry`)
pytest_plugins = ["tests.support.pytest_plugin"]

ENGINES = ["sqlite", "postgresql"]

# `make check` runs the property tests with fewer examples (tests.support.examples). Neither
# profile fails a test because generating its inputs was slow: that is the machine's load
# (a 2-core CI runner, or `make check`'s parallel workers), not the code under test.
_NOT_TIMING = [HealthCheck.too_slow]
settings.register_profile("default", suppress_health_check=_NOT_TIMING)
settings.register_profile("check", max_examples=20, suppress_health_check=_NOT_TIMING)

# The tests make thousands of small commits and fetches: git's automatic maintenance after
# each (a `git maintenance run --auto` process, sometimes a gc) is not what they test. The
# variables reach every git the tests start, the bot's included (it passes its environment on).
_count = int(os.environ.get("GIT_CONFIG_COUNT", "0"))
for _i, (_key, _value) in enumerate((("maintenance.auto", "false"), ("gc.auto", "0")), _count):
    os.environ[f"GIT_CONFIG_KEY_{_i}"], os.environ[f"GIT_CONFIG_VALUE_{_i}"] = _key, _value
os.environ["GIT_CONFIG_COUNT"] = str(_count + 2)
# Nothing here talks to the internet: the system's CA store (~140 certificates, ~40 ms to load)
# is not needed, and every `kubernetes.aio` client of a plain-HTTP fake would load it; one
# throw-away certificate (public part only) stands in for it, here and in what the tests start
os.environ["SSL_CERT_FILE"] = str(Path(__file__).parent / "support" / "fixtures" / "test-ca.pem")
_databases = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_engines: run store-using tests on SQLite and PostgreSQL"
    )
    config.addinivalue_line("markers", "postgresql_only: run a store-using test on PostgreSQL")
    config.addinivalue_line(
        "markers", "real: starts a real server or a deploybot process (set automatically)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `real` every test whose fixtures or code start a real server or a `deploybot`
    process (tests.support.real), and every test run on PostgreSQL."""
    for item in items:
        if _is_real(item):
            item.add_marker(pytest.mark.real)


def _is_real(item: pytest.Item) -> bool:
    params = dict(getattr(getattr(item, "callspec", None), "params", {}))
    if params.get("engine") == "postgresql":
        return True
    if reaches_real(getattr(item, "function", None)):
        return True
    info = getattr(item, "_fixtureinfo", None)
    defs = dict(info.name2fixturedefs) if info is not None else {}
    manager = item.session._fixturemanager
    for value in params.values():  # a server class, or a fixture asked for by name
        if reaches_real(value):
            return True
        if isinstance(value, str) and (named := manager.getfixturedefs(value, item)):
            defs[value] = named
    return any(reaches_real(d.func) for named in defs.values() for d in named)


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
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """An open store in a SQLite file in tmp (tests of one part that keeps its state there)."""
    made = Store(tmp_path / "store.sqlite3")
    await made.open()
    yield made
    await made.close()


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo directory (its git repositories and config), built once per session."""
    template = tmp_path_factory.mktemp("demo-template") / "demo"
    asyncio.run(prepare(template))
    return template.resolve()


@pytest.fixture
async def demo_config_path(
    tmp_path: Path, engine: str, request: pytest.FixtureRequest, demo_template: Path
) -> Path:
    """The demo's config and real git repos (control repo + component repos) in tmp, copied
    from the session's template; on PostgreSQL when the test runs on that engine."""
    demo = (tmp_path / "demo").resolve()
    shutil.copytree(demo_template, demo, symlinks=True)
    config = demo / "deploybot.yaml"
    config.write_text(config.read_text().replace(str(demo_template), str(demo)))
    path = await prepare(demo, listen=f"127.0.0.1:{free_port()}")
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
