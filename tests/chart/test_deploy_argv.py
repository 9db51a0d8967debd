"""The default deploy commands are what the real helmfile 0.166 accepts: `apply` (diff, then
an upgrade only of what changed) with `--wait`, and `--selector name=<release>` for each of
the component's releases, so one component's apply never syncs its whole helmfile. Checked
with the real binary: `--help` after the argv makes helmfile parse every flag (an unknown
one exits non-zero) and run nothing; a selector really narrows what `helmfile` renders."""

from __future__ import annotations

import asyncio
import os
from asyncio.subprocess import PIPE
from pathlib import Path

import pytest
import yaml

from bot.cluster.helm import command_argv
from bot.config.model import parse_config
from tests.chart.helm import Helm, require

CONFIG = parse_config({
    "environments": [{"name": "toolsbeta"}],
    "components": {"builds-api": {}, "builds": {"releases": ["builds", "builds-jobs"]}},
})  # fmt: skip


async def helmfile(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """(exit status, stdout, stdout and stderr)."""
    proc = await asyncio.create_subprocess_exec(
        str(require("helmfile")), *argv, cwd=cwd, env=env, stdout=PIPE, stderr=PIPE
    )
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), out.decode() + err.decode()


@pytest.mark.parametrize("step", ["diff", "apply", "template"])
async def test_the_default_argv_parses_with_the_real_helmfile(step: str, tmp_path: Path) -> None:
    argv = command_argv(CONFIG, getattr(CONFIG.deploy, step), "builds", "toolsbeta")
    assert argv[0] == "helmfile" and argv[-4:] == [
        "--selector", "name=builds", "--selector", "name=builds-jobs",
    ]  # fmt: skip
    if step == "apply":
        assert argv[argv.index("apply") :][:2] == ["apply", "--wait"]  # not `sync`

    code, _, out = await helmfile([*argv[1:], "--help"], tmp_path, dict(os.environ))
    assert code == 0, out
    assert f"helmfile {step} [flags]" in out

    code, _, out = await helmfile(
        [*argv[1:], "--no-such-flag", "--help"], tmp_path, dict(os.environ)
    )
    assert code != 0 and "unknown flag: --no-such-flag" in out  # the check can fail


async def test_a_selector_renders_only_the_component_s_releases(helm: Helm, tmp_path: Path) -> None:
    """A helmfile holding two components' releases: the default template argv of one renders
    only its own (the same `--selector` words go to diff and apply)."""
    for name in ("builds-api", "jobs-api"):
        chart = tmp_path / "charts" / name
        (chart / "templates").mkdir(parents=True)
        (chart / "Chart.yaml").write_text(f"apiVersion: v2\nname: {name}\nversion: 0.1.0\n")
        (chart / "templates" / "cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}\n"
        )
    folder = tmp_path / "components" / "builds-api"
    folder.mkdir(parents=True)
    (folder / "helmfile.yaml").write_text(yaml.safe_dump({
        "environments": {"toolsbeta": {}},
        "releases": [
            {"name": n, "namespace": "shared", "chart": f"../../charts/{n}"}
            for n in ("builds-api", "jobs-api")
        ],
    }))  # fmt: skip
    env = {**os.environ, "HELM_CACHE_HOME": str(helm.home / "cache"),
           "HELM_CONFIG_HOME": str(helm.home / "config"),
           "HELM_DATA_HOME": str(helm.home / "data")}  # fmt: skip
    argv = command_argv(CONFIG, CONFIG.deploy.template, "builds-api", "toolsbeta")

    code, out, both = await helmfile(["--helm-binary", str(helm.binary), *argv[1:]], tmp_path, env)

    assert code == 0, both
    names = {d["metadata"]["name"] for d in yaml.safe_load_all(out) if d}
    assert names == {"builds-api"}
