"""The bench budget checker (`make bench-check`), on a JSON fixture: no timing is measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench.check import DEFAULT_BUDGETS, main

FIGURES = {
    "webhook_to_chat.ngircd": {"ratio_p50": 8.3},
    "webhook_to_chat.inspircd": {"ratio_p50": 9.3},
    "status": {"kube_calls_per_cluster": 2.0, "ratio_cold": 6.0},
    "ingest_throughput": {"ratio_to_baseline": 0.55},
    "burst": {"final_states_correct_pct": 100.0},
    "resilience.no_lookups": {"seconds_after_last_ack_to_all_finals": 2.5},
    "chat_lines": {"max_bytes": 312, "median_bytes": 159},
}


def write(tmp_path: Path, figures: dict[str, dict[str, float]]) -> Path:
    path = tmp_path / "bench-results.json"
    path.write_text(json.dumps({"machine": {"cpu": "test"}, "figures": figures}))
    return path


def test_the_shipped_budgets_pass_on_figures_within_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(write(tmp_path, FIGURES))]) == 0
    assert "all 9 figures within budget" in capsys.readouterr().out


def test_a_budget_tightened_below_the_measured_figure_fails_and_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    budgets = yaml.safe_load(DEFAULT_BUDGETS.read_text())
    for b in budgets["budgets"]:
        if (b["figure"], b["value"]) == ("webhook_to_chat.ngircd", "ratio_p50"):
            b["max"] = 8.0  # below the measured 8.3
        if (b["figure"], b["value"]) == ("ingest_throughput", "ratio_to_baseline"):
            b["min"] = 0.6  # above the measured 0.55
    tight = tmp_path / "budgets.yaml"
    tight.write_text(yaml.safe_dump(budgets))
    assert main([str(write(tmp_path, FIGURES)), "--budgets", str(tight)]) == 1
    out = capsys.readouterr().out
    assert (
        "over budget: webhook_to_chat.ngircd.ratio_p50, ingest_throughput.ratio_to_baseline" in out
    )


def test_a_figure_missing_from_the_results_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = {k: v for k, v in FIGURES.items() if k != "status"}
    assert main([str(write(tmp_path, figures))]) == 1
    assert "status.kube_calls_per_cluster = missing" in capsys.readouterr().out


def test_the_readme_table_is_made_from_the_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(write(tmp_path, FIGURES)), "--table"]) == 0
    out = capsys.readouterr().out
    assert (
        "| Kubernetes API calls per cluster for a cold !status over 100 components | 2 | <= 4 |"
        in out
    )


def test_several_runs_are_judged_by_their_median(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = []
    for i, ratio in enumerate((0.3, 0.5, 0.6)):  # one slow run does not fail the check
        figures = {**FIGURES, "ingest_throughput": {"ratio_to_baseline": ratio}}
        (tmp_path / str(i)).mkdir()
        runs.append(str(write(tmp_path / str(i), figures)))
    assert main(runs) == 0
    assert "ingest_throughput.ratio_to_baseline = 0.5 " in capsys.readouterr().out
