"""Unapplied changes without a cluster: the demo's control repo, the real bot (console chat,
monitors on), the real `helmfile template` (0.166, driving helm 3.17) rendering the commit last
applied and main. A config-only commit (a values change, same chart version) raises
`unapplied` within one interval, naming what the render shows changed; `!apply` resolves it."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from bot.app import App
from bot.chat.console import ConsoleAdapter
from bot.config.model import parse_config
from bot.core.git import git
from tests.chart.helm import require
from tests.support.poll import until
from tests.support.shown import said

EVERY = 1  # monitors.unapplied_every in these tests (seconds)
HTML = {"Accept": "text/html"}


def config(demo: Path, helm: Path, helmfile: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(demo.read_text())
    data.pop("demo", None)
    data["monitors"] = {"unapplied_every": EVERY, "interval": 3600}
    # the demo's environments pull charts from Harbor; render its stand-in charts offline
    data["deploy"]["template"] = [
        str(helmfile), "--helm-binary", str(helm), "-e", "{env}",
        "--file", "components/{component}/helmfile.yaml",
        "--state-values-set", "chartRepository=local", "template", "--skip-deps",
    ]  # fmt: skip
    return data


async def outbox(app: App) -> list[str]:
    rows = await app.store.fetchall("SELECT text FROM outbox ORDER BY id")
    return [str(r["text"]) for r in rows]


async def session(
    data: dict[str, Any],
    lines: list[str],
    wait_for: str | None = None,
    inspect: Callable[[App], Awaitable[None]] | None = None,
) -> tuple[list[str], list[str]]:
    """Run the bot over console lines (as an admin); with `wait_for`, keep it running until
    a line starting so is queued (deadline: 20 intervals); then `inspect` it. Returns
    (printed, outbox)."""
    stdout = io.StringIO()
    stdin = io.StringIO("".join(line + "\n" for line in lines))
    app = App(parse_config(data), console=ConsoleAdapter(stdin, stdout, user="root"))
    await app.start()
    try:
        assert app.console is not None
        await app.console.finished.wait()
        if wait_for is not None:
            await until(lambda: _has(app, wait_for), wait_for, within=20 * EVERY + 30, every=0.1)
        if inspect is not None:
            await inspect(app)
        assert await app.services.outbox.flush(timeout=20)
        queued = await outbox(app)
    finally:
        await app.stop()
    return stdout.getvalue().splitlines(), queued


async def _has(app: App, prefix: str) -> bool:
    return any(t.startswith(prefix) for t in await outbox(app))


async def commit(bare: Path, work: Path, path: str, edit: Callable[[str], str], msg: str) -> str:
    if not (work / ".git").exists():
        await git("clone", "--quiet", str(bare), str(work))
    await git("pull", "--quiet", "--rebase", cwd=work)
    file = work / path
    file.write_text(edit(file.read_text()))
    await git("commit", "--quiet", "-am", msg, cwd=work)
    await git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return (await git("rev-parse", "HEAD", cwd=work)).strip()


async def rendered_deployment(
    helmfile: Path, helm: Path, work: Path, env: str, home: Path
) -> dict[str, Any]:
    """What the real `helmfile template` renders for builds-api now (the test's own look)."""
    proc = await asyncio.create_subprocess_exec(
        str(helmfile), "--helm-binary", str(helm), "-e", env,
        "--file", "components/builds-api/helmfile.yaml",
        "--state-values-set", "chartRepository=local", "template", "--skip-deps",
        cwd=work, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "HELM_CACHE_HOME": str(home / "c"),
             "HELM_CONFIG_HOME": str(home / "cfg"), "HELM_DATA_HOME": str(home / "d")},
    )  # fmt: skip
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    docs = [d for d in yaml.safe_load_all(out) if d]
    return next(d for d in docs if d["kind"] == "Deployment")


async def test_a_config_only_commit_raises_unapplied_and_apply_resolves_it(
    demo_config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helm, helmfile = require("helm"), require("helmfile")
    for var, sub in (
        ("HELM_CACHE_HOME", "c"),
        ("HELM_CONFIG_HOME", "cfg"),
        ("HELM_DATA_HOME", "d"),
    ):
        monkeypatch.setenv(var, str(tmp_path / "helm" / sub))
    data = config(demo_config_path, helm, helmfile)
    bare = demo_config_path.parent / "git" / "toolforge-deploy.git"
    work = tmp_path / "control"

    # toolsbeta runs its pin after this apply: nothing is unapplied there
    out, _ = await session(data, ["!apply builds-api toolsbeta"])
    assert any(line.startswith("deploy #1 done") for line in said(out)), out

    # a comment: nothing renders differently, so nothing is said
    values = "components/builds-api/values/toolsbeta.yaml"
    await commit(bare, work, values, lambda t: t + "# reviewed\n", "values: a comment")
    # a config-only change: same chart version, one more replica
    before = await rendered_deployment(helmfile, helm, work, "toolsbeta", tmp_path / "h")
    sha = await commit(
        bare, work, values, lambda t: t.replace("replicas: 2", "replicas: 3"), "more api replicas"
    )
    after = await rendered_deployment(helmfile, helm, work, "toolsbeta", tmp_path / "h")
    assert before["spec"]["replicas"] == 2 and after["spec"]["replicas"] == 3
    assert before["metadata"]["labels"] == after["metadata"]["labels"]  # same chart version

    async def board_names_it(app: App) -> None:
        async def shown() -> bool:
            url = f"http://{app.config.http.listen}/status"
            async with aiohttp.ClientSession() as http, http.get(url, headers=HTML) as resp:
                page = await resp.text()
            return "ALERT unapplied" in page and "Deployment/builds-api (helmfile template)" in page

        await until(shown, "the board shows the unapplied alert", within=30, every=0.1)

    _, queued = await session(
        data, [], wait_for="ALERT unapplied builds-api toolsbeta", inspect=board_names_it
    )
    [alert] = [t for t in queued if t.startswith("ALERT unapplied")]
    assert alert.startswith(
        "ALERT unapplied builds-api toolsbeta: applying main would change 1 resource:"
        " Deployment/builds-api (helmfile template); 2 control-repo commits since the last"
        " apply ("
    ), alert
    assert f"{sha[:8]} more api replicas" in alert
    assert alert.endswith("; next: !apply builds-api toolsbeta")
    assert not any("unapplied builds-api tools:" in t for t in queued)  # tools: never applied

    out, queued = await session(
        data,
        ["!status builds-api toolsbeta", "!apply builds-api toolsbeta"],
        wait_for="RESOLVED unapplied builds-api toolsbeta",
    )
    assert "ALERT: unapplied" in out[0], out
    assert any(line.startswith("deploy #2 done") for line in said(out)), out
