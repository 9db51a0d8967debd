"""Benchmark: final states lost when the IRC server is killed and restarted 10 times during
a burst (issue "Resilience", README Reliability table).

Runs `tests/support/ircrestarts.py` (50 staggered pipelines, 500 deliveries, `deploybot
run` on a stock ngircd behind a door that lets the watching client in first after each
restart) with several seeds, so the kills land at different moments of the flow. Per run:
finals lost, finals repeated, lines, seconds until every final was seen. Two series: kills
at random moments of the flow, and kills the moment one of the bot's lines is on the wire
(`in_flight`: the worst moment; IRC has no acknowledgement of a PRIVMSG). Prints one JSON
object per run and a total per series.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.support.ircrestarts import burst_with_restarts

SEEDS = [int(s) for s in os.environ.get("IRC_RESTART_SEEDS", "14,15,16,17,18").split(",")]


async def runs(workdir: Path, in_flight: bool) -> list[dict[str, object]]:
    name = "irc_restarts.in_flight" if in_flight else "irc_restarts"
    results: list[dict[str, object]] = []
    for seed in SEEDS:
        run = await burst_with_restarts(
            workdir / f"{name}-{seed}", pipelines=50, restarts=10, seed=seed, in_flight=in_flight
        )
        results.append({"bench": name, "seed": seed, **dataclasses.asdict(run)})
    results.append({
        "bench": f"{name}.total", "runs": len(SEEDS),
        "restarts": sum(int(r["restarts"]) for r in results),  # type: ignore[call-overload]
        "finals": sum(int(r["pipelines"]) for r in results),  # type: ignore[call-overload]
        "finals_lost": sum(len(r["lost"]) for r in results),  # type: ignore[arg-type]
        "finals_repeated": sum(int(r["repeats"]) for r in results),  # type: ignore[call-overload]
        "lines_resent": sum(int(r["resent"]) for r in results),  # type: ignore[call-overload]
        "late_watcher_sessions": sum(int(r["late_sessions"]) for r in results),  # type: ignore[call-overload]
    })  # fmt: skip
    return results


async def run_all(workdir: Path) -> list[dict[str, object]]:
    return await runs(workdir, False) + await runs(workdir, True)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-irc-restarts-") as tmp:
        try:
            results = asyncio.run(run_all(Path(tmp)))
        except (pytest.skip.Exception, pytest.fail.Exception) as exc:
            results = [{"bench": "irc_restarts", "skipped": str(exc)}]
    for result in results:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
