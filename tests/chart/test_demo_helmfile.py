"""The demo control repo is a valid helmfile setup: each component rendered by the real
`helmfile template` (0.166, driving the real helm 3.17) in the `local` environment, offline —
`local` uses the stand-in charts kept in the control repo (`charts/<component>`), and the
`.yaml.gotmpl` values run `helpers/get_secret.sh` as on a deploy host."""

from __future__ import annotations

import asyncio
import os
from asyncio.subprocess import PIPE
from pathlib import Path
from typing import Any

import yaml

from bot.core.git import git
from tests.chart.helm import Helm, one, require


async def _checkout(demo_config_path: Path, into: Path) -> Path:
    bare = demo_config_path.parent / "git" / "toolforge-deploy.git"
    await git("clone", "--quiet", str(bare), str(into))
    return into


async def _helmfile(
    helm: Helm, repo: Path, component: str, env: dict[str, str]
) -> tuple[int, str, str]:
    """`helmfile -e local --file components/<component>/helmfile.yaml template`."""
    proc = await asyncio.create_subprocess_exec(
        str(require("helmfile")), "--helm-binary", str(helm.binary), "-e", "local",
        "--file", f"components/{component}/helmfile.yaml", "template",
        cwd=repo, env=env, stdout=PIPE, stderr=PIPE,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _template(
    helm: Helm, repo: Path, component: str, env: dict[str, str]
) -> list[dict[str, Any]]:
    code, out, err = await _helmfile(helm, repo, component, env)
    assert code == 0, err[-2000:]
    return [d for d in yaml.safe_load_all(out) if d]


async def test_every_demo_component_renders_with_the_real_helmfile(
    helm: Helm, demo_config_path: Path, tmp_path: Path
) -> None:
    repo = await _checkout(demo_config_path, tmp_path / "toolforge-deploy")
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "jobs-api-token").write_text("not-a-real-token")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(helm.home / "cache"),
        "HELM_CONFIG_HOME": str(helm.home / "config"),
        "HELM_DATA_HOME": str(helm.home / "data"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "TOOLFORGE_DEPLOY_SECRETS_DIR": str(secrets),
    }
    for component, values in (
        ("builds-api", "local.yaml"),
        ("jobs-api", "local.yaml.gotmpl"),
    ):
        text = (repo / "components" / component / "values" / values).read_text()
        pinned = text.split("chartVersion:", 1)[1].split()[0]
        docs = await _template(helm, repo, component, env)
        deployment = one(docs, "Deployment", component)
        assert deployment["metadata"]["namespace"] == component
        assert deployment["metadata"]["labels"]["helm.sh/chart"] == f"{component}-{pinned}"
        assert deployment["spec"]["replicas"] == 1  # from the local values file
        image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == f"tools-harbor.wmcloud.org/toolforge/{component}:{pinned}"

    # without its secret, the gotmpl values cannot render: the helper really runs
    (secrets / "jobs-api-token").unlink()
    code, out, err = await _helmfile(helm, repo, "jobs-api", env)
    assert code != 0
    assert "secret jobs-api-token not found" in out + err
