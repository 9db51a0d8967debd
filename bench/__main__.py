"""`python -m bench [name ...]`: run every bench module's `main()` (or only the named ones).

Prints one JSON object per line: first the machine the figures were measured on, then
each module's figures. A module that fails prints `{"bench": name, "error": ...}` and the
others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import importlib
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
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def run(names: list[str]) -> int:
    print(json.dumps(machine()), flush=True)
    failed = 0
    for name in names:
        try:
            module = importlib.import_module(f"bench.{name}")
            entry = getattr(module, "main", None)
            if entry is None:
                continue
            entry()
        except Exception as exc:  # one broken benchmark must not hide the others
            failed += 1
            traceback.print_exc(file=sys.stderr)
            print(json.dumps({"bench": name, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    available = modules()
    unknown = [n for n in argv if n not in available]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available)}",
              file=sys.stderr)  # fmt: skip
        return 2
    return run(argv or available)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
