"""The perf section of ``kbtool report``: 3-way table, Opt@K, speed ratio, calibration."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbtool.report.sections import RunView
from kbtool.runs.layout import RunLayout
from kbtool_plugins.perf.report import perf_report


def result(task: str, status: str = "ok", speedup: float | None = None, human: float = 2.0,
           calibrated: bool = True, opt_base: bool = False, opt_commit: bool = False,
           versus: float | None = None) -> dict[str, Any]:
    return {"task": task, "kind": "perf", "status": status, "speedup": speedup,
            "speedup_ci": [speedup * 0.9, speedup * 1.1] if speedup else None,
            "human_speedup": human if status == "ok" else None, "calibrated": calibrated,
            "agent_vs_human": versus if versus is not None else
            (speedup / human if speedup else None),
            "significant": bool(speedup and speedup > 1.1), "opt_base": opt_base,
            "opt_commit": opt_commit}


def make_run(root: Path, candidates: dict[str, list[dict[str, Any]]]) -> RunView:
    layout = RunLayout(root)
    for task, results in candidates.items():
        for step, res in enumerate(results):
            where = layout.step_dir(task, 0, step, 0)
            where.mkdir(parents=True)
            (where / "candidate.diff").write_text("")
            (where / "eval.json").write_text(json.dumps(res))
    layout.tasks.write_text(json.dumps([{"id": t, "kind": "perf",
                                         "labels": {"package": "p", "pair": "1 -> 2"}}
                                        for t in candidates]))
    return RunView(root, list(candidates), {t: "perf" for t in candidates}, {})


def test_opt_at_k_speed_ratio_and_calibration(tmp_path: Path) -> None:
    view = make_run(tmp_path, {
        # found an opt_commit patch at its 3rd candidate
        "perf/a": [result("perf/a", "incorrect"), result("perf/a", speedup=1.1),
                   result("perf/a", speedup=2.2, opt_base=True, opt_commit=True)],
        # its best is opt_base only (slower than the human)
        "perf/b": [result("perf/b", speedup=1.5, opt_base=True, human=3.0)],
        # its best is no faster than the baseline: speed ratio 1 / the human's
        "perf/c": [result("perf/c", "incorrect"), result("perf/c", speedup=1.0, human=4.0)],
        # the negative control: the human was not faster here
        "perf/d": [result("perf/d", speedup=1.3, human=1.0, calibrated=False,
                          opt_base=True)],
    })
    section = perf_report(view)
    assert section is not None
    data = section.data
    assert data["uncalibrated"] == ["perf/d"] and data["scored_tasks"] == 3
    base, commit = data["opt_at_k"]["opt_base"], data["opt_at_k"]["opt_commit"]
    assert base["1"] == pytest.approx(1 / 3) and base["5"] == pytest.approx(2 / 3)
    assert commit["1"] == 0 and commit["5"] == pytest.approx(1 / 3)
    tasks = data["tasks"]
    assert tasks["perf/a"]["best_speedup"] == 2.2 and tasks["perf/a"]["speed_ratio"] == 1.1
    assert tasks["perf/c"]["speed_ratio"] == pytest.approx(0.25)
    ratios = [1.1, 0.5, 0.25]
    assert data["speed_ratio_hmean"] == pytest.approx(3 / sum(1 / r for r in ratios))
    three_way = {row[0]: row for row in section.tables[0].rows}
    assert three_way["perf/d"][2] == "NO" and three_way["perf/a"][2] == "yes"
    assert "left out, uncalibrated: perf/d" in section.tables[1].title
    # K past the candidates a task had: a caveat, and the cells marked.
    assert data["caveats"][0].startswith("K=3 exceeds the candidates of 2 of 3 scored tasks "
                                         "(fewest: 1)")
    assert section.tables[1].rows[0][2].endswith("*") and "*" in section.tables[1].title
    assert section.plot is not None
    written = section.plot(tmp_path / "plots")
    assert {p.name for p in written} >= {"perf_speedups.png", "perf_opt_at_k.png"}


def test_a_failed_patch_counts_as_no_change(tmp_path: Path) -> None:
    view = make_run(tmp_path, {"perf/x": [result("perf/x", "incorrect"),
                                          result("perf/x", "compile_error")]})
    section = perf_report(view)
    assert section is not None
    task = section.data["tasks"]["perf/x"]
    assert task["correct"] == 0 and task["calibrated"] is None  # never timed: unknown
    assert section.data["uncalibrated"] == ["perf/x"]


def test_no_perf_tasks_no_section(tmp_path: Path) -> None:
    assert perf_report(RunView(tmp_path, ["builtin/1/1"], {"builtin/1/1": "kernelbench"},
                               {})) is None
