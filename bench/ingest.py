"""Benchmark: webhook ingest — verified, deduped, persisted and acked deliveries per second.

Runs the real App (console chat into a buffer, SQLite in a temp dir, token required) and,
as the baseline in the same run, a bare aiohttp handler that answers 200 without looking at
the request. The load comes from a separate process (`python -m bench.ingest client ...`)
so client and server do not share an event loop. Two figures:

- throughput: closed loop, fixed concurrency, bounded count and time; bot / bare ratio
  (target >= 0.5);
- ack latency: open loop at 200 requests/s; p50/p99 of POST to response (target p99 <= 20 ms).

Every delivery is a Pipeline Hook for one of 100 pipelines with a unique event UUID, so each
is stored and processed (announcements included) while the next ones arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-webhook-secret"
PIPELINES = 100
THROUGHPUT_REQUESTS = 3000
CONCURRENCY = 16
LATENCY_RATE = 200.0
LATENCY_REQUESTS = 1000
TIME_LIMIT_S = 30.0
TARGET_RATIO = 0.5
TARGET_P99_MS = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bodies() -> list[bytes]:
    template = json.loads((ROOT / "config/demo/payloads/pipeline_running.json").read_text())
    out = []
    for i in range(PIPELINES):
        template["object_attributes"]["id"] = 800000 + i
        out.append(json.dumps(template).encode())
    return out


# the load generator (child process)


async def _client(url: str, mode: str, count: int, concurrency: int, rate: float) -> dict[str, Any]:
    bodies = _bodies()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + TIME_LIMIT_S
    connector = aiohttp.TCPConnector(limit=max(concurrency, 64))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> None:
            headers = {
                "Content-Type": "application/json",
                "X-Gitlab-Event": "Pipeline Hook",
                "X-Gitlab-Token": SECRET,
                "X-Gitlab-Event-UUID": f"bench-{mode}-{os.getpid()}-{i}",
            }
            start = time.perf_counter()
            async with session.post(url, data=bodies[i % PIPELINES], headers=headers) as r:
                await r.read()
                statuses[r.status] = statuses.get(r.status, 0) + 1
            latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        if mode == "closed":
            counter = iter(range(count))

            async def worker() -> None:
                for i in counter:
                    if time.monotonic() > deadline:
                        return
                    await one(i)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            for i in range(count):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                if time.monotonic() > deadline:
                    break
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "seconds": elapsed, "statuses": statuses,
            "latencies_ms": [x * 1000 for x in latencies]}  # fmt: skip


async def _load(
    url: str, mode: str, count: int, concurrency: int = 1, rate: float = 0.0
) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.ingest", "client", url, mode, str(count),
        str(concurrency), str(rate), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), TIME_LIMIT_S + 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    if proc.returncode:
        raise RuntimeError(f"load generator exited with {proc.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


# the servers under test (this process)


@asynccontextmanager
async def _bare_server() -> AsyncIterator[str]:
    async def ok(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_post("/webhooks/gitlab", ok)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/webhooks/gitlab"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _bot(tmp: str) -> AsyncIterator[tuple[str, Callable[[], Any], Callable[[], Any]]]:
    """The bot's webhook URL, a count of stored events, and a wait until every stored event
    was handled."""
    sys.path.insert(0, str(ROOT))
    from bot.app import App
    from bot.chat.console import ConsoleAdapter
    from bot.config.model import parse_config

    os.environ["DEPLOYBOT_BENCH_WEBHOOK_SECRET"] = SECRET
    port = _free_port()
    config = parse_config({
        "bot": {"state_dir": tmp},
        "http": {"listen": f"127.0.0.1:{port}", "max_body_bytes": 1_048_576},
        "chat": {"default_room": "#bench", "console": {}},
        "gitlab": {"url": "http://127.0.0.1:9", "webhook_secret_env": "DEPLOYBOT_BENCH_WEBHOOK_SECRET"},
        "components": {"builds-api": {"project": "repos/cloud/toolforge/builds-api"}},
    })  # fmt: skip
    read_fd, write_fd = os.pipe()
    stdin = os.fdopen(read_fd)
    app = App(config, console=ConsoleAdapter(stdin, io.StringIO(), user="bench"))
    await app.start()

    async def stored() -> int:
        row = await app.store.fetchone("SELECT count(*) FROM events")
        return int(row[0]) if row else 0

    async def handled() -> None:
        assert app.events is not None
        await app.events.wait_idle(TIME_LIMIT_S)

    try:
        yield f"http://127.0.0.1:{port}/webhooks/gitlab", stored, handled
    finally:
        os.close(write_fd)
        await app.stop()
        stdin.close()


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def _timed_load(
    url: str, count: int, handled: Callable[[], Any] | None = None
) -> tuple[dict[str, Any], float]:
    """The closed-loop load, and the server process's CPU per request (ms, every thread,
    until every event was handled: a figure a busy neighbour disturbs less than throughput)."""
    cpu = time.process_time()
    result = await _load(url, "closed", count, CONCURRENCY)
    if handled is not None:
        await handled()
    return result, (time.process_time() - cpu) * 1000 / max(1, result["requests"])


async def _run() -> list[dict[str, Any]]:
    async with _bare_server() as url:
        bare, bare_cpu = await _timed_load(url, THROUGHPUT_REQUESTS)
        bare_paced = await _load(url, "open", LATENCY_REQUESTS, rate=LATENCY_RATE)
    with tempfile.TemporaryDirectory() as tmp:
        async with _bot(tmp) as (url, stored, handled):
            bot, bot_cpu = await _timed_load(url, THROUGHPUT_REQUESTS, handled)
            paced = await _load(url, "open", LATENCY_REQUESTS, rate=LATENCY_RATE)
            rows = await stored()
    bare_rps = bare["requests"] / bare["seconds"]
    bot_rps = bot["requests"] / bot["seconds"]
    ratio = bot_rps / bare_rps
    p50, p99 = _pct(paced["latencies_ms"], 0.50), _pct(paced["latencies_ms"], 0.99)
    return [
        {
            "bench": "ingest_throughput",
            "what": f"verified+deduped+persisted+acked Pipeline Hooks, {CONCURRENCY} concurrent",
            "bot_per_s": round(bot_rps, 1),
            "bare_aiohttp_per_s": round(bare_rps, 1),
            "ratio_to_baseline": round(ratio, 2),
            "target_ratio": TARGET_RATIO,
            "within_target": ratio >= TARGET_RATIO,
            "bot_cpu_ms_per_request": round(bot_cpu, 3),
            "bare_cpu_ms_per_request": round(bare_cpu, 3),
            "requests": bot["requests"],
            "statuses": bot["statuses"],
            "events_stored": rows,
        },
        {
            "bench": "ingest_ack_latency",
            "what": f"POST to 200 at {LATENCY_RATE:.0f} req/s (open loop)",
            "p50_ms": round(p50, 2),
            "p99_ms": round(p99, 2),
            "bare_p50_ms": round(_pct(bare_paced["latencies_ms"], 0.50), 2),
            "bare_p99_ms": round(_pct(bare_paced["latencies_ms"], 0.99), 2),
            "target_p99_ms": TARGET_P99_MS,
            "within_target": p99 <= TARGET_P99_MS,
            "requests": paced["requests"],
        },
    ]


def main() -> None:
    for figure in asyncio.run(_run()):
        print(json.dumps(figure), flush=True)


def _client_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="bench.ingest client")
    p.add_argument("url")
    p.add_argument("mode", choices=["closed", "open"])
    p.add_argument("count", type=int)
    p.add_argument("concurrency", type=int)
    p.add_argument("rate", type=float)
    a = p.parse_args(argv)
    result = asyncio.run(_client(a.url, a.mode, a.count, a.concurrency, a.rate))
    print(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1:2] == ["client"]:
        _client_main(sys.argv[2:])
    else:
        main()
