"""The real-server fixtures work: PostgreSQL (psql round trip, cut-off and recovery) and the
OCI registry (push image and chart, HEAD by tag, retention delete)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.oci_registry import (
    DOCKER_MANIFEST,
    HELM_CONFIG,
    OCI_MANIFEST,
    OciRegistry,
    delete_tag,
    get_manifest,
    head_manifest,
    list_tags,
    manifest_digest,
    push_chart,
    push_manifest,
)
from tests.support.postgres import PgServer, running_postgres
from tests.support.procs import children_of

pytestmark = pytest.mark.timeout(30)

IMAGE = "toolforge/builds-api"
CHART = "toolforge/charts/builds-api"


# --- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_table_round_trip(postgres: PgServer) -> None:
    assert postgres.url == f"postgresql://deploybot@127.0.0.1:{postgres.port}/deploybot"

    postgres.psql("CREATE TABLE sal (id serial PRIMARY KEY, msg text NOT NULL)")
    postgres.psql("INSERT INTO sal (msg) VALUES ('deployed builds-api'), ('rolled back')")

    assert postgres.query("SELECT id, msg FROM sal ORDER BY id") == [
        ["1", "deployed builds-api"],
        ["2", "rolled back"],
    ]
    assert postgres.query("SELECT current_user, current_database()") == [["deploybot", "deploybot"]]


def test_postgres_listens_on_loopback_only(postgres: PgServer) -> None:
    assert postgres.query("SHOW listen_addresses") == [["127.0.0.1"]]
    assert postgres.query("SHOW fsync") == [["off"]]


def test_postgres_cut_off_then_back(postgres: PgServer) -> None:
    postgres.psql("CREATE TABLE t (x int)")

    with postgres.blocked():
        started = time.monotonic()
        cut = postgres.psql("INSERT INTO t VALUES (1)", connect_timeout=2, check=False)
        assert cut.returncode != 0
        assert "timeout expired" in cut.stderr
        assert time.monotonic() - started < 8

    postgres.psql("INSERT INTO t VALUES (2)")
    assert postgres.query("SELECT x FROM t") == [["2"]]


def test_postgres_restart_keeps_data_and_port(postgres: PgServer) -> None:
    postgres.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
    port = postgres.port

    postgres.restart()

    assert postgres.port == port
    assert postgres.query("SELECT x FROM t") == [["7"]]


def test_postgres_stops_every_process_and_removes_data(tmp_path: Path) -> None:
    with running_postgres(tmp_path) as pg:
        assert pg.proc is not None
        postmaster = pg.proc.pid
        workers = children_of(postmaster)
        datadir = pg.datadir
        assert workers, "a running postmaster has background workers"
        pg.pause()  # stopping must also work on a cut-off server

    for pid in [postmaster, *workers]:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    assert not datadir.exists()
    with pytest.raises(subprocess.CalledProcessError):
        pg.psql("SELECT 1", connect_timeout=2)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


# --- OCI registry -------------------------------------------------------------------------


def test_registry_push_head_and_retention_delete(oci_registry: OciRegistry) -> None:
    url = oci_registry.url

    digest = push_manifest(url, IMAGE, "0.0.131")
    push_manifest(url, IMAGE, "0.0.132")

    found = head_manifest(url, IMAGE, "0.0.131", accept=OCI_MANIFEST)
    assert found.status == 200
    assert found.headers["Docker-Content-Digest"] == digest
    assert head_manifest(url, IMAGE, "0.0.999", accept=OCI_MANIFEST).status == 404
    assert head_manifest(url, "toolforge/nothing", "0.0.131", accept=OCI_MANIFEST).status == 404

    assert delete_tag(url, IMAGE, "0.0.131") == digest

    assert head_manifest(url, IMAGE, "0.0.131", accept=OCI_MANIFEST).status == 404
    assert manifest_digest(url, IMAGE, "0.0.132") is not None  # other tags are untouched
    assert list_tags(url, IMAGE) == ["0.0.132"]


def test_registry_hides_oci_manifests_from_docker_only_clients(oci_registry: OciRegistry) -> None:
    push_manifest(oci_registry.url, IMAGE, "0.0.131")

    assert head_manifest(oci_registry.url, IMAGE, "0.0.131", accept=DOCKER_MANIFEST).status == 404


def test_registry_holds_helm_charts(oci_registry: OciRegistry) -> None:
    url = oci_registry.url

    digest = push_chart(url, CHART, "0.0.131+20240101")

    manifest = get_manifest(url, CHART, "0.0.131_20240101")
    assert manifest is not None and manifest["config"]["mediaType"] == HELM_CONFIG
    assert manifest["annotations"]["org.opencontainers.image.version"] == "0.0.131+20240101"
    assert manifest_digest(url, CHART, "0.0.131_20240101") == digest
    assert manifest_digest(url, CHART, "0.0.130") is None
    config = json.loads(_blob(url, CHART, manifest["config"]["digest"]))
    assert (config["name"], config["version"]) == ("builds-api", "0.0.131+20240101")


def test_registry_restart_keeps_artifacts(oci_registry: OciRegistry) -> None:
    digest = oci_registry.push_manifest(IMAGE, "0.0.131")

    oci_registry.restart()

    assert oci_registry.manifest_digest(IMAGE, "0.0.131") == digest


def _blob(url: str, name: str, digest: str) -> bytes:
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"{url}/v2/{name}/blobs/{digest}", timeout=5) as resp:
        data: bytes = resp.read()
    return data


# --- a missing package: skip locally, fail in CI -----------------------------------------


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_servers_skip_locally_and_fail_in_ci(
    ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.support.oci_registry as oci
    import tests.support.postgres as pg

    monkeypatch.setenv("CI", ci)
    monkeypatch.setattr(pg, "find_bindir", lambda: None)
    monkeypatch.setattr(oci, "find_binary", lambda: None)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception

    for start, package in ((pg.running_postgres, "postgresql"), (oci.running_registry, "docker")):
        with pytest.raises(outcome, match=f"apt-get install -y --no-install-recommends {package}"):
            with start(tmp_path):
                pass
