"""`python -m bench.profile_ingest [N]`: cProfile of the webhook path under the ingest load.

Runs the real App as bench/ingest.py does and, with cProfile on in the server process, sends
N Pipeline Hooks (16 concurrent, from a separate process); prints the top entries by own
time and by cumulative time. What shows up here before the 200 is what ingest pays for.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import tempfile

from bench.ingest import CONCURRENCY, _bot, _load


async def _profiled(count: int) -> pstats.Stats:
    profile = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        async with _bot(tmp) as (url, _, _):
            profile.enable()
            await _load(url, "closed", count, CONCURRENCY)
            profile.disable()
    return pstats.Stats(profile, stream=io.StringIO())


def main(argv: list[str]) -> None:
    count = int(argv[0]) if argv else 2000
    stats = asyncio.run(_profiled(count))
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(key).print_stats(25)
        print(f"--- top 25 by {key} ---")
        print(out.getvalue().split("ncalls", 1)[-1])


if __name__ == "__main__":
    main(sys.argv[1:])
