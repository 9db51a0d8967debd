"""Benchmark: 5,000 slow HTTP clients against a bot limited to 1,024 file descriptors.

`deploybot run` (a subprocess, default HTTP limits) gets `RLIMIT_NOFILE` 1024 (prlimit).
The bench opens 5,000 connections that each send half a request head and then nothing,
and meanwhile times 200 `GET /healthz` requests. Reported: /healthz status codes and p50/p99
latency, against the same 200 requests before the attack (the baseline, same run), and how
big the bot's log grew during the attack (it once wrote 35 MB of "Too many open files").
"""

from __future__ import annotations

import asyncio
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.botproc import BotProcess

SLOW = 5000
PROBES = 200
HALF_HEAD = b"POST /webhooks/gitlab HTTP/1.1\r\nHost: x\r\n"


async def probe(url: str, n: int) -> tuple[list[float], dict[int, int]]:
    times: list[float] = []
    codes: dict[int, int] = {}
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        for _ in range(n):
            started = time.monotonic()
            try:
                async with http.get(url + "/healthz") as r:
                    await r.read()
                    code = r.status
            except (aiohttp.ClientError, TimeoutError):
                code = 0
            times.append(time.monotonic() - started)
            codes[code] = codes.get(code, 0) + 1
    return times, codes


def pct(values: list[float], q: float) -> float:
    return round(1000 * sorted(values)[min(len(values) - 1, int(q * len(values)))], 1)


async def _run(workdir: Path) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, SLOW + 2000), hard))
    bot = BotProcess(workdir / "bot", {"chat": {"default_room": "#x"},
                                      "monitors": {"enabled": False}})  # fmt: skip
    writers: list[asyncio.StreamWriter] = []
    try:
        await bot.start()
        assert bot.pid is not None
        resource.prlimit(bot.pid, resource.RLIMIT_NOFILE, (1024, 1024))
        base_times, base_codes = await probe(bot.url, PROBES)
        log_before = bot.log_path.stat().st_size

        async def slow_client() -> None:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", bot.port)
                writer.write(HALF_HEAD)
                writers.append(writer)
            except OSError:
                pass

        for start in range(0, SLOW, 250):
            await asyncio.gather(*(slow_client() for _ in range(start, min(SLOW, start + 250))))
        times, codes = await probe(bot.url, PROBES)
        log_growth = bot.log_path.stat().st_size - log_before
        alive = bot.running
    finally:
        for writer in writers:
            writer.close()
        await bot.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return {
        "bench": "slow_clients",
        "what": f"{SLOW} half-sent requests, bot under ulimit -n 1024, {PROBES} GET /healthz",
        "slow_connections_opened": len(writers),
        "healthz_codes": codes,
        "healthz_p50_ms": pct(times, 0.5),
        "healthz_p99_ms": pct(times, 0.99),
        "baseline_codes": base_codes,
        "baseline_p50_ms": pct(base_times, 0.5),
        "baseline_p99_ms": pct(base_times, 0.99),
        "p99_ratio": round(
            statistics.quantiles(times, n=100)[98]
            / max(1e-6, statistics.quantiles(base_times, n=100)[98]),
            1,
        ),
        "log_bytes_during_attack": log_growth,
        "bot_alive": alive,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-slow-clients-") as tmp:
        try:
            result = asyncio.run(_run(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            result = {"bench": "slow_clients", "skipped": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
