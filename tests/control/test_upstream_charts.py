"""Upstream charts (cert-manager): versions from a Helm repository's index.yaml on loopback
(or an OCI tag list), semver ordering, a pin inside a helmfile's `releases:` list that all
environments share."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.cluster.charts import ChartRepos
from bot.cluster.kube import chart_label_version
from bot.cluster.registry import Registry
from bot.config.model import parse_config
from bot.core.git import git
from bot.core.redact import Redactor
from bot.store.db import Store
from bot.store.sal import Sal
from tests.support.bumpworld import Repos, git_config, make_repos, remote_file
from tests.support.chartrepo import ChartRepo
from tests.support.fakes.registry import FakeRegistry
from tests.support.session import console_session

HELMFILE_PATH = "components/cert-manager/helmfile.yaml"
HELMFILE = """\
repositories:
  - name: jetstack
    url: https://charts.jetstack.io
releases:
  - name: cert-manager
    namespace: cert-manager
    chart: jetstack/cert-manager
    version: v1.11.0
  - name: trust-manager
    namespace: cert-manager
    chart: jetstack/trust-manager
    version: v0.5.0
"""
VERSIONS = ["v1.10.2", "v1.11.0", "v1.12.0", "v1.13.0-alpha.1", "v1.12.0-rc.1"]


async def add_helmfile(repos: Repos, tmp: Path) -> None:
    work = tmp / "work-helmfile"
    await git("clone", "--quiet", repos.control_url, str(work))
    (work / HELMFILE_PATH).parent.mkdir(parents=True)
    (work / HELMFILE_PATH).write_text(HELMFILE)
    await git("add", "-A", cwd=work)
    await git(
        "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "cert-manager", cwd=work
    )
    await git("push", "--quiet", "origin", "main", cwd=work)


def cert_manager(helm_repo: str) -> dict[str, Any]:
    return {
        "helm_repo": helm_repo,
        "chart": "cert-manager",
        "pins": [{"file": HELMFILE_PATH, "key": "releases[name=cert-manager].version"}],
    }


async def test_deploy_changes_exactly_the_releases_version_line(tmp_path: Path) -> None:
    repos = await make_repos(tmp_path)
    await add_helmfile(repos, tmp_path)
    async with ChartRepo({"cert-manager": VERSIONS, "trust-manager": ["v0.5.0"]}) as charts:
        base = git_config(tmp_path, repos)
        data = base.model_dump(mode="json", exclude_none=True)
        data["components"]["cert-manager"] = cert_manager(charts.url)
        config = parse_config(data)
        out = await console_session(
            config,
            [
                "!diff cert-manager latest to toolsbeta",
                "!deploy cert-manager v1.14.0 to toolsbeta",
                "!deploy cert-manager v1.12.0 to toolsbeta",
                "!status cert-manager toolsbeta",
            ],
        )
    assert out[0].startswith("cert-manager: would change 1 file: ")
    assert "toolsbeta: v1.11.0 -> v1.12.0" in out[0]  # latest skips the pre-release
    assert out[0].endswith(f"({HELMFILE_PATH} is shared by every environment)")
    assert out[2] == "deploy: unknown version v1.14.0; newest is v1.13.0-alpha.1"
    assert out[3] == (
        "cert-manager v1.11.0 -> v1.12.0 in local, toolsbeta, tools"
        f" ({HELMFILE_PATH} is shared by every environment)"
    )
    assert out[4].startswith("pushed ")
    assert out[5] == "cert-manager toolsbeta: pinned v1.12.0 · latest v1.12.0 step 6/6"
    after = await remote_file(repos.control, HELMFILE_PATH)
    assert after == HELMFILE.replace("version: v1.11.0", "version: v1.12.0")
    numstat = await git("diff", "--numstat", "main~1", "main", cwd=repos.control)
    assert numstat.split() == ["1", "1", HELMFILE_PATH]
    store = Store(config.bot.state_dir / "deploybot.sqlite3")
    await store.open()
    entries = await Sal(store, [], Redactor()).query(component="cert-manager", limit=10)
    await store.close()
    assert sorted(e.env or "" for e in entries) == ["local", "tools", "toolsbeta"]
    assert {(e.from_version, e.to_version) for e in entries} == {("v1.11.0", "v1.12.0")}


async def test_versions_come_from_an_oci_tag_list_across_pages(tmp_path: Path) -> None:
    async with FakeRegistry(auth="bearer") as reg:
        for v in ("v1.11.0", "v1.12.0+build.1", "v1.9.0"):
            reg.push("charts/cert-manager", v.replace("+", "_"))
        host = reg.url.removeprefix("http://")
        config = parse_config(
            {"components": {"cert-manager": cert_manager(f"oci://{host}/charts")}}
        )
        async with Registry(reg.url) as registry:
            tags = await ChartRepos(config, registry).tags("cert-manager")
        assert sorted(t.name for t in tags) == ["v1.11.0", "v1.12.0+build.1", "v1.9.0"]
        pages = [s.path for s in reg.requests if "tags/list" in s.path]
        assert len(pages) >= 3  # two tags a page, followed by Link (and a 401 challenge first)


async def test_an_unreachable_or_wrong_index_is_one_line(tmp_path: Path) -> None:
    async with ChartRepo({"kyverno": ["3.0.0"]}) as charts:
        config = parse_config({"components": {"cert-manager": cert_manager(charts.url)}})
        with pytest.raises(Exception, match="^chart cert-manager is not in the repository"):
            await ChartRepos(config).tags("cert-manager")
    dead = parse_config({"components": {"cert-manager": cert_manager(charts.url)}})
    with pytest.raises(Exception, match=r"^cannot read 127\.0\.0\.1/index.yaml \("):
        await ChartRepos(dead).tags("cert-manager")


def test_the_live_version_of_an_upstream_chart_is_read_from_its_label() -> None:
    assert chart_label_version("cert-manager-v1.12.0", "cert-manager") == "v1.12.0"
    assert chart_label_version("cert-manager-1.12.0", "cert-manager") == "1.12.0"
    assert chart_label_version("cert-manager-webhook", "cert-manager") is None
