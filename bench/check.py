"""`python -m bench.check [RESULTS ...] [--budgets FILE] [--table]`: compare a `make bench`
result file (several: the median of each figure) with `bench/budgets.yaml` and name every figure over its budget (exit 1), or missing
from the results (exit 1: a bench that did not run guards nothing). `--table` prints the
README's Performance table (Markdown) from the same results instead.

Timings never go in tests; this is how a figure is kept from sliding back. The checker itself
is tested on a JSON fixture (tests/test_bench_check.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE.parent / "bench-results.json"
DEFAULT_BUDGETS = HERE / "budgets.yaml"


@dataclass(frozen=True)
class Verdict:
    figure: str
    value: str
    says: str
    measured: float | None
    limit: float
    is_max: bool

    @property
    def ok(self) -> bool:
        if self.measured is None:
            return False
        return self.measured <= self.limit if self.is_max else self.measured >= self.limit

    def line(self) -> str:
        sign = "<=" if self.is_max else ">="
        got = "missing" if self.measured is None else f"{self.measured:g}"
        mark = "ok  " if self.ok else "OVER"
        return (
            f"{mark} {self.figure}.{self.value} = {got} (budget {sign} {self.limit:g}): {self.says}"
        )


def judge(results: dict[str, Any], budgets: dict[str, Any]) -> list[Verdict]:
    figures = results.get("figures", {})
    out = []
    for b in budgets.get("budgets", []):
        figure = figures.get(b["figure"], {})
        raw = figure.get(b["value"]) if isinstance(figure, dict) else None
        measured = (
            float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        )
        is_max = "max" in b
        limit = float(b["max"] if is_max else b["min"])
        out.append(Verdict(b["figure"], b["value"], b.get("says", ""), measured, limit, is_max))
    return out


def table(verdicts: list[Verdict], results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    rows = [
        f"Measured by `make bench` on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores),"
        f" Python {machine.get('python', '?')}; median of {machine.get('runs', 1)} run(s);"
        f" load average before the first: {machine.get('load_before')}.",
        "",
        "| figure | measured | budget | load after | |",
        "|---|---|---|---|---|",
    ]
    figures = results.get("figures", {})
    for v in verdicts:
        sign = "<=" if v.is_max else ">="
        got = "missing" if v.measured is None else f"{v.measured:g}"
        load = (figures.get(v.figure) or {}).get("load_after", "")
        rows.append(
            f"| {v.says} | {got} | {sign} {v.limit:g} | {load} | {'ok' if v.ok else 'OVER'} |"
        )
    return "\n".join(rows)


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from several runs: each numeric figure's median (the first run's machine)."""
    figures: dict[str, dict[str, Any]] = {}
    for run in runs:
        for name, figure in run.get("figures", {}).items():
            for key, value in figure.items():
                figures.setdefault(name, {}).setdefault(key, []).append(value)
    merged = {
        name: {
            k: statistics.median(v)
            if all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
            else v[-1]
            for k, v in values.items()
        }
        for name, values in figures.items()
    }
    machine = dict(runs[0].get("machine", {})) if runs else {}
    machine["runs"] = len(runs)
    return {"machine": machine, "figures": merged}


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.check")
    p.add_argument("results", nargs="*", type=Path, default=[DEFAULT_RESULTS])
    p.add_argument("--budgets", type=Path, default=DEFAULT_BUDGETS)
    p.add_argument("--table", action="store_true")
    a = p.parse_args(argv)
    try:
        results = median_of([json.loads(path.read_text()) for path in a.results])
        budgets = yaml.safe_load(a.budgets.read_text())
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(
            f"cannot read the results or budgets: {exc} (run `make bench` first)", file=sys.stderr
        )
        return 2
    verdicts = judge(results, budgets)
    if a.table:
        print(table(verdicts, results))
        return 0
    for v in verdicts:
        print(v.line())
    over = [f"{v.figure}.{v.value}" for v in verdicts if not v.ok]
    if over:
        print(f"over budget: {', '.join(over)}")
        return 1
    print(f"all {len(verdicts)} figures within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
