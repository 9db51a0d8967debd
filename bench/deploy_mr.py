"""Benchmark: `!deploy` to bump-MR-open time on a 200-component control repo (FakeGitLab).

Drives the real bump service (ref resolution through the tags API, pin reads through the
files API, one commit, one MR) for several components and reports the median, next to a
baseline measured in the same run: one bare GitLab API round-trip (reading one file).
Target: <= 2 s per deploy. Prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMPONENTS = 200
RUNS = 7
TARGET_S = 2.0
CONTROL = "repos/cloud/toolforge/toolforge-deploy"
TOKEN = "bench-token"


def _control_files() -> dict[str, str]:
    files = {"deploy.sh": "#!/bin/bash\n", "README.md": "# toolforge-deploy\n"}
    for i in range(COMPONENTS):
        name = f"component-{i:03d}"
        files[f"components/{name}/helmfile.yaml"] = f"releases:\n  - name: {name}\n"
        for env, n in (("local", 12), ("toolsbeta", 11), ("tools", 10)):
            files[f"components/{name}/values/{env}.yaml"] = (
                f"chartVersion: 0.0.{n}-20240222212602-322f874b\nchartRepository: tools\n"
                f"api:\n  replicas: 2\n"
            )
    return files


async def _run() -> dict[str, Any]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bot.app import App
    from bot.config.model import parse_config
    from tests.support.fakes.gitlab import FakeGitLab

    async with FakeGitLab(token=TOKEN) as fake:
        fake.add_project(CONTROL, files=_control_files())
        components: dict[str, Any] = {}
        latest = {}
        for i in range(RUNS):
            name = f"component-{i:03d}"
            project = f"repos/cloud/toolforge/{name}"
            fake.add_project(project)
            for n in range(20, 24):
                sha = fake.add_commit(project, "main", {"CHANGES": f"{n}\n"}, f"change {n}")
                latest[name] = f"0.0.{n}-202402231{n - 20}0000-{sha[:8]}"
                fake.add_tag(project, latest[name], sha)
        for i in range(COMPONENTS):
            components[f"component-{i:03d}"] = {
                "project": f"repos/cloud/toolforge/component-{i:03d}"
            }
        os.environ["DEPLOYBOT_BENCH_TOKEN"] = TOKEN
        with tempfile.TemporaryDirectory() as tmp:
            config = parse_config({
                "bot": {"state_dir": tmp},
                "gitlab": {"url": fake.url, "token_env": "DEPLOYBOT_BENCH_TOKEN"},
                "control_repo": {"forge": "gitlab", "project": CONTROL},
                "environments": [{"name": "local"}, {"name": "toolsbeta"},
                                 {"name": "tools", "requires": "toolsbeta"}],
                "components": components,
            })  # fmt: skip
            app = App(config)
            await app.store.open()
            try:
                bumper, gitlab = app.bumper, app.services.gitlab
                assert bumper is not None and gitlab is not None
                envs = config.env_names
                baseline, timings = [], []
                for i in range(RUNS):
                    name = f"component-{i:03d}"
                    start = time.perf_counter()
                    await gitlab.get_file(CONTROL, f"components/{name}/values/tools.yaml", "main")
                    baseline.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    version = await bumper.resolve(name, "latest", envs)
                    outcome = await bumper.bump(name, version.raw, envs, actor="bench:bench")
                    timings.append(time.perf_counter() - start)
                    assert outcome.published is not None and outcome.published.mr is not None
            finally:
                await app.store.close()
                if app.services.gitlab is not None:
                    app.services.gitlab.close()
        requests = len(fake.requests)
    deploy = statistics.median(timings)
    base = statistics.median(baseline)
    return {
        "bench": "deploy_mr",
        "what": f"!deploy to bump MR open, {COMPONENTS}-component control repo, FakeGitLab",
        "deploy_to_mr_open_s": round(deploy, 4),
        "baseline_api_roundtrip_s": round(base, 4),
        "ratio_to_baseline": round(deploy / base, 1) if base else None,
        "target_s": TARGET_S,
        "within_target": deploy <= TARGET_S,
        "runs": RUNS,
        "api_requests_per_deploy": round((requests - RUNS) / RUNS, 1),
    }


def main() -> None:
    print(json.dumps(asyncio.run(_run())), flush=True)


if __name__ == "__main__":
    main()
