"""Benchmark: kill -9 at 20 points of `!deploy` and `!apply`, then a restart (issue
"Resilience").

Runs every point of `tests/support/killmatrix.py` once, each on its own copy of the demo's
repositories, with the real `deploybot run`, the recording helmfile/helm and FakeKube: the
command is typed, the bot killed when the point is reached, restarted on the same state and
left to settle. Prints one JSON object per point (lost SAL entries, double applies, orphans,
lines the restarted bot should have said and did not, seconds) and one with the totals.
`tests/faults/test_kill_matrix.py` runs a subset of the same points in `make test`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.killmatrix import POINTS, prepare_template, run_point


async def _run(tmp: Path, names: list[str]) -> list[dict[str, Any]]:
    template = await prepare_template(tmp)
    results = []
    for n, point in enumerate(p for p in POINTS if not names or p.name in names):
        try:
            outcome = await run_point(tmp / f"trial-{n}", template, point)
        except AssertionError as exc:  # a point that was never reached, or did not settle
            results.append({"point": point.name, "error": str(exc)})
        else:
            results.append({**outcome.figures(), "problems": outcome.problems()})
        print(json.dumps({"bench": "kill_matrix", **results[-1]}), flush=True)
    return results


def main(names: list[str] | None = None) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-kill-matrix-") as tmp:
        results = asyncio.run(_run(Path(tmp), names or []))
    keys = ("lost_sal_entries", "double_applies", "orphans", "silent")
    totals = {k: sum(int(r.get(k, 0)) for r in results) for k in keys}
    print(json.dumps({
        "bench": "kill_matrix", "points": len(results),
        "errors": sum(1 for r in results if "error" in r), **totals,
        "seconds": round(time.monotonic() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
