"""Benchmark: `!status` over 100 components x 2 environments, 20 ms per Kubernetes API call.

Drives the real status gathering (`bot.status.status_lines`: pins from a real git control
repo, release tags by `git ls-remote`, Deployments from one FakeKube per environment with
20 ms injected latency, reached through a kubeconfig, locks/alerts from SQLite) once cold and
once within the cache. The FakeKubes run in a process of their own (`python -m bench.status
fakes`), as an API server runs elsewhere: their rendering is not counted in the bot's time; and prints beside them the sequential estimate: the number of
Kubernetes calls made times 20 ms (what awaiting them one by one would cost, before any git
or CPU time). Target (issue 26): cold <= 0.25 s, at most 4 calls per cluster. Prints one
JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = 100
ENVS = ("toolsbeta", "tools")
LATENCY = 0.020
TARGET_S = 0.25
VERSIONS = [f"0.0.{n}-2026110{n - 20}120000-{n:08x}" for n in range(20, 24)]


async def _repos(root: Path) -> tuple[str, str]:
    """A control repo pinning every component, and one component repo with release tags."""
    from bot.core.git import git

    work = root / "control-work"
    for i in range(COMPONENTS):
        for env, version in zip(ENVS, VERSIONS[-1:-3:-1], strict=True):
            path = work / "components" / f"c{i:03d}" / "values" / f"{env}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"chartVersion: {version}\napi:\n  replicas: 2\n")
    await git("init", "--quiet", "--initial-branch=main", str(work))
    await git("add", "-A", cwd=work)
    await git("commit", "--quiet", "-m", "import", cwd=work)
    await git("clone", "--quiet", "--bare", str(work), str(root / "control.git"))
    comp = root / "comp-work"
    await git("init", "--quiet", "--initial-branch=main", str(comp))
    for version in VERSIONS:
        await git("commit", "--quiet", "--allow-empty", "-m", version, cwd=comp)
        await git("tag", version, cwd=comp)
    await git("clone", "--quiet", "--bare", str(comp), str(root / "component.git"))
    return f"file://{root / 'control.git'}", f"file://{root / 'component.git'}"


async def _run() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    import yaml

    from bot.app import App, settle_heap, use_io_threads
    from bot.config.model import parse_config
    from bot.status.lines import status_lines

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        control_url, component_url = await _repos(root)
        names = [f"c{i:03d}" for i in range(COMPONENTS)]
        async with _fakes() as (urls, calls):
            kubeconfig = root / "kubeconfig"
            kubeconfig.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config",
                "clusters": [{"name": e, "cluster": {"server": u}} for e, u in urls.items()],
                "users": [{"name": "bench", "user": {"token": "bench"}}],
                "contexts": [{"name": e, "context": {"cluster": e, "user": "bench"}} for e in urls],
                "current-context": "tools",
            }))  # fmt: skip
            config = parse_config({
                "bot": {"state_dir": str(root / "var")},
                "control_repo": {"forge": "git", "url": control_url},
                "environments": [
                    {"name": e, "kubeconfig": str(kubeconfig), "kube_context": e} for e in ENVS
                ],
                "components": {n: {"repo_url": component_url} for n in names},
            })  # fmt: skip
            app = App(config)
            use_io_threads()  # as App.start does
            await app.store.open()
            try:
                await app.services.control.sync() if app.services.control else None
                # as App.start does in the background: the cluster clients are made
                await asyncio.gather(*(c.warm() for c in app.services.clusters.values()))
                settle_heap()  # as App.start does once started
                start = time.perf_counter()
                lines = await status_lines(app.board, names, list(ENVS))
                cold = time.perf_counter() - start
                made = await calls()
                start = time.perf_counter()
                await status_lines(app.board, names, list(ENVS))
                warm = time.perf_counter() - start
            finally:
                for cluster in app.services.clusters.values():
                    await cluster.close()
                await app.store.close()
    unknown = sum("unknown" in line for line in lines)
    return {
        "bench": "status",
        "what": f"!status over {COMPONENTS} components x {len(ENVS)} environments, "
        f"{LATENCY * 1000:.0f} ms per Kubernetes API call",
        "status_cold_s": round(cold, 3),
        "sequential_estimate_s": round(made * LATENCY, 3),
        "kube_calls": made,
        "kube_calls_per_cluster": round(made / len(ENVS), 1),
        "baseline": "two Kubernetes API round trips (2 x 20 ms)",
        "baseline_s": round(2 * LATENCY, 3),
        "ratio_cold": round(cold / (2 * LATENCY), 2),
        "status_cached_s": round(warm, 3),
        "lines": len(lines),
        "lines_with_unknown": unknown,
        "target_s": TARGET_S,
        "within_target": cold <= TARGET_S,
    }


@asynccontextmanager
async def _fakes() -> AsyncIterator[tuple[dict[str, str], Callable[[], Awaitable[int]]]]:
    """The API servers in their own process: their URLs, and a call that asks how many API
    requests they have answered so far."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.status", "fakes", cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    stdin, stdout = proc.stdin, proc.stdout

    async def calls() -> int:
        stdin.write(b"count\n")
        await stdin.drain()
        return int(await asyncio.wait_for(stdout.readline(), 30))

    try:
        urls = json.loads(await asyncio.wait_for(stdout.readline(), 60))
        yield urls, calls
    finally:
        stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def _serve_fakes() -> None:
    """`python -m bench.status fakes`: one FakeKube per environment, every component deployed,
    20 ms per call; prints their URLs as one JSON line, answers `count` with the number of
    requests served, stops at the end of its input."""
    sys.path.insert(0, str(ROOT))
    from tests.support.fakes.kube import FakeKube

    async with FakeKube() as beta, FakeKube() as prod:
        kubes = {"toolsbeta": beta, "tools": prod}
        for env, kube in kubes.items():
            version = VERSIONS[-1] if env == "toolsbeta" else VERSIONS[-2]
            for i in range(COMPONENTS):
                kube.add_deployment(f"c{i:03d}", f"c{i:03d}", chart=f"c{i:03d}", version=version)
            kube.latency = LATENCY
        print(json.dumps({env: kube.url for env, kube in kubes.items()}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while (await reader.readline()).strip() == b"count":
            print(len(beta.requests) + len(prod.requests), flush=True)


def main() -> None:
    if sys.argv[1:2] == ["fakes"]:
        asyncio.run(_serve_fakes())
    else:
        print(json.dumps(asyncio.run(_run())), flush=True)


if __name__ == "__main__":
    main()
