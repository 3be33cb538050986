"""Every speedup a run reports, against every baseline, is its evaluation's: paired (timed by
the judge in the candidate's rounds) or labelled ``cached``; never a baseline timed apart
divided by a runtime timed in the pairs.  A judge's own failure is kbtool's
(``internal_error``), not the candidate's.

The kind is tests/fixtures/kbtool-paired-kind: a stand-in judge with figures known in
advance, whose reference timed apart (the baseline cache) is far from the paired one under
``second``, as in the README's run (44.1 ms apart, 1.6-2.0 ms paired)."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kbtool.monitor.state import RunFollower
from tests.helpers import FIXTURES, install_distribution, run_with_site

KIND = FIXTURES / "kbtool-paired-kind"
TRANSCRIPT = KIND / "src" / "kbtool_paired" / "transcript.yaml"
TASK = "paired/1/1_one"
PAIRED_MS = {"first": 3.0, "second": 2.4}       # what the judge reports (kbtool_paired)
APART_MS = {"first": 3.1, "second": 44.1, "third": 8.0}  # the reference timed apart
BEST_MS = 1.5                                   # the transcript's correct candidate


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_distribution(KIND, tmp_path_factory.mktemp("paired-site"),
                                tmp_path_factory.mktemp("paired-src"))


def kbtool(site: Path, cache: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_with_site(site, cache, *args, cwd=cwd, KBTOOL_LOAD_PLUGINS="paired")


@pytest.fixture(scope="module")
def run(site: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> tuple[Path, Path, subprocess.CompletedProcess[str]]:
    """One search of the task: (its run directory, its cache, the process)."""
    where = tmp_path_factory.mktemp("paired-run")
    cache, run_dir = where / "cache", where / "run"
    proc = kbtool(site, cache, "run", TASK, f"model_name=replay/{TRANSCRIPT}", "num_samples=2",
                  "num_phases=1", "max_fix_attempts=1", f"run_dir={run_dir}", "device=cpu",
                  "--config-profile", "quick", cwd=where)
    assert proc.returncode == 0, proc.stderr
    return run_dir, cache, proc


def figures(entry: dict[str, Any]) -> tuple[float, list[float] | None, str | None]:
    return entry["speedup"], entry["speedup_ci"], entry["speedup_from"]


def test_a_run_reports_the_evaluations_speedups(site: Path, run: tuple[Path, Path, Any],
                                                tmp_path: Path) -> None:
    run_dir, cache, _ = run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["baselines"] == ["first", "second", "third"]
    task = summary["tasks"][TASK]
    best = run_dir / task["best_solution"]
    evaluation = json.loads((best.parent / "eval.json").read_text())
    speedups = evaluation["speedups"]
    assert evaluation["runtime_ms"] == BEST_MS

    # The evaluation: first and second from the judge's pairs (the search asked for all
    # three baselines); third from the cached baseline, with that baseline's own interval.
    for name, ms in PAIRED_MS.items():
        assert speedups[name]["speedup_from"] == "paired"
        assert speedups[name]["speedup"] == pytest.approx(ms / BEST_MS)
        assert speedups[name]["baseline_ms"] == ms
    third = speedups["third"]
    assert third["speedup_from"] == "cached" and "cached_baseline" in evaluation["flags"]
    assert third["speedup"] == pytest.approx(APART_MS["third"] / BEST_MS)
    assert third["speedup_ci"] == pytest.approx([(8.0 - 0.1) / (BEST_MS * 1.03),
                                                 (8.0 + 0.1) / (BEST_MS * 0.97)])
    # The result's own speedup is the one under mode (first), as in its speedups.
    assert (evaluation["speedup"], evaluation["speedup_ci"], evaluation["speedup_from"]) == \
        figures(speedups["first"])

    # summary.json: the evaluation's figures, each with its source; never 44.1 / 1.5.
    for name, entry in speedups.items():
        assert (task["speedup"][name], task["speedup_ci"][name], task["speedup_from"][name]) \
            == figures(entry), name
        assert task["baselines_ms"][name] == entry["baseline_ms"]

    # kbtool report: JSON, CSV and the table say the same.
    report = kbtool(site, cache, "report", str(run_dir), "--json", "--csv",
                    str(tmp_path / "csv"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    rep = json.loads(report.stdout)
    row = rep["tasks"][TASK]
    for name, entry in speedups.items():
        assert (row["speedup"][name], row["speedup_ci"][name], row["speedup_from"][name]) == \
            figures(entry), name
    assert rep["speedup_from"] == {"first": {"paired": 1}, "second": {"paired": 1},
                                   "third": {"cached": 1}}
    assert rep["fast_p"]["second"]["1.5"] == 1.0   # 1.6x, its interval above 1
    assert rep["fast_p"]["second"]["2.0"] == 0.0   # not 29.4x
    with open(tmp_path / "csv" / "tasks.csv", newline="") as handle:
        (line,) = list(csv.DictReader(handle))
    assert float(line["speedup_second"]) == pytest.approx(speedups["second"]["speedup"])
    assert line["speedup_second_from"] == "paired" and line["speedup_third_from"] == "cached"
    table = kbtool(site, cache, "report", str(run_dir), cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "1.600x [1.52-1.68]" in table.stdout and "5.333x [5.11-5.57] cached" in table.stdout

    # The monitor folds the events by the same rule.
    follower = RunFollower(run_dir)
    follower.poll()
    state = follower.state
    for name, entry in speedups.items():
        found = state.tasks[TASK].against(name, state.eval_mode)
        assert found is not None
        assert (found.speedup, list(found.ci or ()), found.source) == figures(entry), name

    # kbtool eval of the same candidate, with the run's baselines, gives the same figures.
    again = kbtool(site, cache, "eval", TASK, "--solution", str(best), "--json", "device=cpu",
                   "baselines=[first,second,third]", "--config-profile", "quick", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["speedups"] == speedups


def test_a_judges_failure_is_kbtools(site: Path, run: tuple[Path, Path, Any],
                                     tmp_path: Path) -> None:
    run_dir, cache, proc = run
    assert "kbtool failed while judging 1 candidate" in proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    task = summary["tasks"][TASK]
    assert task["statuses"] == {"internal_error": 1, "ok": 1}
    assert summary["totals"]["internal_errors"] == 1
    # The failed candidate's chain asked the model nothing more: no fix prompt.
    chains = sorted(run_dir.glob("tasks/*/phase0/agent*"))
    failed = [c for c in chains if json.loads((c / "step0" / "eval.json").read_text())
              ["status"] == "internal_error"]
    assert len(failed) == 1 and not (failed[0] / "step1").exists()
    assert "the judge's own bug" in json.loads((failed[0] / "step0" / "eval.json")
                                               .read_text())["error"]
    rep = json.loads(kbtool(site, cache, "report", str(run_dir), "--json", cwd=tmp_path).stdout)
    assert rep["statuses"]["candidate_correct_rate"] == 1.0   # 1 judged, 1 ok
    assert rep["statuses"]["tasks_with_internal_errors"] == [TASK]

    # kbtool eval: kbtool's error in one line, exit 1; --json still prints the result.
    bad = failed[0] / "step0" / "candidate.py"
    plain = kbtool(site, cache, "eval", TASK, "--solution", str(bad), "device=cpu",
                   "--config-profile", "quick", cwd=tmp_path)
    assert plain.returncode == 1 and plain.stdout == ""
    lines = plain.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kbtool: error: kbtool failed while judging")
    assert "RuntimeError: the judge's own bug" in lines[0]
    as_json = kbtool(site, cache, "eval", TASK, "--solution", str(bad), "--json", "device=cpu",
                     "--config-profile", "quick", cwd=tmp_path)
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout)["status"] == "internal_error"
