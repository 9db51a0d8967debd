"""`python -m bench [--out FILE] [name ...]`: run every bench module's `main()` (or only the
named ones).

Prints one JSON object per line: first the machine the figures were measured on (with the
load average before and after), then each module's figures. A module that fails prints
`{"bench": name, "error": ...}` and the others still run; the exit status is 1 if any failed.
`--out` also writes every figure into one JSON file (`make bench`: bench-results.json), which
`python -m bench.check` compares with `bench/budgets.yaml`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import pkgutil
import platform
import sys
import traceback
from pathlib import Path


def machine() -> dict[str, object]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "bench": "machine",
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def modules() -> list[str]:
    here = Path(__file__).parent
    skip = {"check", "profile_ingest", "memory"}  # tools, not benchmarks
    names = (m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))
    return sorted(n for n in names if n not in skip)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def figures_of(text: str) -> list[dict[str, object]]:
    """The JSON objects a bench module printed, one a line (other lines are ignored)."""
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict) and "bench" in obj:
                out.append(obj)
    return out


def run_one(name: str) -> tuple[list[dict[str, object]], bool]:
    buffer = io.StringIO()
    ok = True
    try:
        module = importlib.import_module(f"bench.{name}")
        entry = getattr(module, "main", None)
        if entry is not None:
            with contextlib.redirect_stdout(buffer):
                entry()
    except Exception as exc:  # one broken benchmark must not hide the others
        ok = False
        traceback.print_exc(file=sys.stderr)
        print(json.dumps({"bench": name, "error": f"{type(exc).__name__}: {exc}"}), file=buffer)
    print(buffer.getvalue(), end="", flush=True)
    return figures_of(buffer.getvalue()), ok


def run(names: list[str], out: Path | None = None) -> int:
    header = {**machine(), "load_before": load()}
    print(json.dumps(header), flush=True)
    failed = 0
    figures: dict[str, dict[str, object]] = {}
    for name in names:
        found, ok = run_one(name)
        failed += not ok
        for figure in found:
            figures[str(figure["bench"])] = {**figure, "load_after": load()}
    if out is not None:
        out.write_text(json.dumps({"machine": header, "figures": figures}, indent=1) + "\n")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    out = None
    if argv[:1] == ["--out"] and len(argv) > 1:
        out, argv = Path(argv[1]), argv[2:]
    available = modules()
    unknown = [n for n in argv if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available)}",
              file=sys.stderr)  # fmt: skip
        return 2
    return run(argv or available, out)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
