"""The summary rule and the report take each baseline's speedup from the evaluation
(``EvalResult.speedups``: paired, or labelled cached), never from a baseline timed apart
divided by the candidate's paired runtime."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from kbtool.evaluation.result import BaselineSpeedup, EvalResult, TimingStats
from kbtool.report.build import build_report, load_run, write_csv
from kbtool.runs.summary import Attempt, against_each, summarize_task
from tests.helpers import RUN_SMALL

# The reference timed apart (the run's baseline events) and in the judge's pairs: the
# README's MLP, 44.1 ms apart under compile, 2.0 ms paired.
APART = {"eager": 5.0, "compile": 44.1}
PAIRED = {"eager": BaselineSpeedup(baseline_ms=4.0, speedup=2.5, speedup_ci=[2.4, 2.6],
                                   significant=True, speedup_from="paired"),
          "compile": BaselineSpeedup(baseline_ms=2.0, speedup=1.25, speedup_ci=[1.1, 1.4],
                                     significant=True, speedup_from="paired")}


def attempt(runtime: float, speedups: dict[str, BaselineSpeedup] | None = None,
            phase: int = 0) -> Attempt:
    own = (speedups or {}).get("eager")
    return Attempt(phase=phase, status="ok", runtime_ms=runtime,
                   speedup=own.speedup if own else APART["eager"] / runtime,
                   baseline_ms=own.baseline_ms if own else APART["eager"],
                   speedup_ci=(2.4, 2.6), speedup_from="paired",
                   speedups=against_each(speedups or {}))


def test_the_rule_reports_each_baselines_speedup_as_evaluated() -> None:
    summary = summarize_task([attempt(1.6, PAIRED)], dict(APART), "eager")
    for name, entry in PAIRED.items():
        assert summary.speedup[name] == entry.speedup
        assert summary.speedup_ci[name] == entry.speedup_ci
        assert summary.speedup_from[name] == "paired"
        assert summary.baselines_ms[name] == entry.baseline_ms  # as it was compared with
    assert summary.phases[0].speedup == summary.speedup
    assert summary.phases[0].speedup_from == summary.speedup_from


def test_a_baseline_the_evaluation_did_not_report_gets_no_speedup() -> None:
    only_eager = {"eager": PAIRED["eager"]}
    summary = summarize_task([attempt(1.6, only_eager)], dict(APART), "eager")
    assert summary.speedup["compile"] is None and summary.speedup_from["compile"] is None
    assert summary.baselines_ms["compile"] == APART["compile"]


def test_results_from_before_speedups_label_the_other_baselines_cached() -> None:
    summary = summarize_task([attempt(2.0)], dict(APART), "eager")
    assert summary.speedup["eager"] == 2.5 and summary.speedup_from["eager"] == "paired"
    assert summary.speedup["compile"] == pytest.approx(44.1 / 2.0)
    assert summary.speedup_from["compile"] == "cached"


def test_a_cached_speedup_holds_both_intervals() -> None:
    base = TimingStats(timer="cpu", trials=10, mean_ms=10, median_ms=10, std_ms=1, min_ms=8,
                       max_ms=12, ci95_low_ms=9, ci95_high_ms=11, stop_reason="converged")
    run = base.model_copy(update={"median_ms": 5, "ci95_low_ms": 4, "ci95_high_ms": 6})
    found = BaselineSpeedup.cached(base, run)
    assert (found.speedup, found.speedup_ci, found.speedup_from) == (2.0, [1.5, 11 / 4],
                                                                       "cached")
    assert found.significant is True


def test_results_without_speedups_still_load() -> None:
    data = json.loads((RUN_SMALL / "tasks/builtin_1_1_Matmul/phase0/agent0/step0/eval.json")
                      .read_text())
    assert "speedups" not in data
    assert EvalResult.model_validate(data).speedups == {}


def test_the_report_takes_speedups_from_the_evaluations(tmp_path: Path) -> None:
    """A crashed run (no summary.json) rebuilt from its eval.json files: the best Matmul
    candidate's evaluation has paired speedups; the run's baseline events hold the
    reference timed apart (compile 7.96 ms)."""
    run = tmp_path / "run"
    shutil.copytree(RUN_SMALL, run)
    (run / "summary.json").unlink()
    best = run / "tasks/builtin_1_1_Matmul/phase0/agent0/step0/eval.json"
    data = json.loads(best.read_text())
    data["speedups"] = {
        "eager": {"baseline_ms": 7.987935, "speedup": data["speedup"],
                  "speedup_ci": [0.98, 1.02], "significant": False, "speedup_from": "paired"},
        "compile": {"baseline_ms": 9.6, "speedup": 9.6 / data["runtime_ms"],
                    "speedup_ci": [1.1, 1.3], "significant": True, "speedup_from": "paired"}}
    best.write_text(json.dumps(data))
    rep = build_report(load_run(run))
    matmul = rep["tasks"]["builtin/1/1_Matmul"]
    assert matmul["speedup"]["compile"] == pytest.approx(9.6 / 7.972835)
    assert matmul["speedup_ci"]["compile"] == [1.1, 1.3]
    assert matmul["speedup_from"] == {"eager": "paired", "compile": "paired"}
    assert matmul["baselines_ms"]["compile"] == 9.6
    # Linear's evaluation has no speedups (an older result): its compile one is labelled.
    assert rep["tasks"]["builtin/2/1_Linear_ReLU_Add"]["speedup_from"]["compile"] == "cached"
    assert rep["speedup_from"]["compile"] == {"paired": 1, "cached": 2}
    # fast_1.0 vs compile: Matmul (1.20, paired, above 1) and Linear (1.57); not ReLU.
    assert rep["fast_p"]["compile"]["1.0"] == 2 / 4
    phase0 = rep["phases"][0]["tasks"]["builtin/1/1_Matmul"]
    assert phase0["speedup"]["compile"] == matmul["speedup"]["compile"]
    assert phase0["speedup_from"]["compile"] == "paired"
    files = write_csv({"run": rep}, tmp_path / "csv")
    with open(files[0], newline="") as handle:
        rows = {row["task"]: row for row in csv.DictReader(handle)}
    assert rows["builtin/1/1_Matmul"]["speedup_compile_from"] == "paired"
    assert float(rows["builtin/1/1_Matmul"]["speedup_compile_low"]) == 1.1
    assert rows["builtin/2/1_Linear_ReLU_Add"]["speedup_compile_from"] == "cached"
