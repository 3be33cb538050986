"""A SWE-bench/GSO predictions file of three models for a built-in perf task and a
repository item (packaging, real releases from PyPI), several lines per instance: judged,
each diff mapped onto its kind, and reported per model (Opt@K, pass@k, pass rate)."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_kbtool
from tests.perf.conftest import QUICK, perf_cache  # noqa: F401 - the session's releases
from tests.predictions import expected_pass_at_k
from tests.repo.conftest import _fetch

PERF = "perf/packaging-canonicalize"
ITEM = "repo/packaging/repair/13__BaseVersion.__le__"
SETTINGS = [f"{k}={v}" for k, v in QUICK.items() if k != "perf_tasks_dir"]


@pytest.fixture(scope="module")
def cache(perf_cache: Path) -> Path:  # noqa: F811 - the fixture imported above
    """The perf releases, and the repository of the item, in one cache."""
    _fetch("packaging", perf_cache)
    return perf_cache


def shown(task: str, cache: Path) -> dict[str, Any]:
    proc = run_kbtool("tasks", "show", task, "--json", f"cache_dir={cache}")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def file_diff(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True),
                                        new.splitlines(keepends=True), f"a/{path}", f"b/{path}"))


@pytest.fixture(scope="module")
def judged(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    human = shown(PERF, cache)["human_patch"]
    item = shown(ITEM, cache)
    context, path = item["context"], item["file_path"]
    assert item["buggy_method"] in context  # the file as the prompt shows it
    fixed = context.replace(item["buggy_method"], item["original"])
    removed = next(line for line in human.splitlines() if line.startswith("-")
                   and not line.startswith("---"))
    broken = human.replace(removed + "\n", "-a line the file does not have\n", 1)
    lines = [
        ("modelA", PERF, human),
        ("modelA", ITEM, file_diff(path, context, fixed)),
        ("modelA", PERF, None),  # no patch: the baseline itself
        ("modelA", ITEM, f"Here it is:\n```python\n{item['buggy_method']}```\n"),
        ("modelB", PERF, broken),
        ("modelB", ITEM, file_diff(path, context, "import os\n" + fixed)),
        ("modelB", PERF, human),
        ("modelB", ITEM, item["original"]),
        ("modelC", PERF, broken),
    ]
    root = tmp_path_factory.mktemp("patches")
    preds = root / "preds.jsonl"
    preds.write_text("".join(json.dumps({"instance_id": task, "model_name_or_path": model,
                                         "model_patch": patch, "full_output": "..."}) + "\n"
                             for model, task, patch in lines))
    run_dir = root / "run"
    proc = run_kbtool("eval", "--predictions", str(preds), f"run_dir={run_dir}", "--json",
                      f"cache_dir={cache}", *SETTINGS)
    assert proc.returncode == 0, proc.stderr
    return run_dir, json.loads(proc.stdout)


def verdicts(run_dir: Path, rows: list[dict[str, Any]]) -> dict[tuple[str, str, int],
                                                                   dict[str, Any]]:
    return {(r["model"], r["task"], r["sample"]):
            json.loads((run_dir / r["candidate"] / "eval.json").read_text()) for r in rows}


def test_each_diff_is_judged_by_its_kind(judged: tuple[Path, dict[str, Any]]) -> None:
    run_dir, data = judged
    found = verdicts(run_dir, data["predictions"])
    assert {key: v["status"] for key, v in found.items()} == {
        ("modelA", PERF, 0): "ok", ("modelA", PERF, 1): "ok",
        ("modelA", ITEM, 0): "ok", ("modelA", ITEM, 1): "incorrect",
        ("modelB", PERF, 0): "compile_error", ("modelB", PERF, 1): "ok",
        ("modelB", ITEM, 0): "compile_error", ("modelB", ITEM, 1): "ok",
        ("modelC", PERF, 0): "compile_error"}
    assert found[("modelA", PERF, 1)]["outcome"] == "empty_patch"
    assert found[("modelB", PERF, 0)]["outcome"] == "does_not_apply"
    assert "outside the method __le__" in found[("modelB", ITEM, 0)]["error"]
    assert found[("modelA", ITEM, 0)]["tests_passed"] == found[("modelA", ITEM, 0)]["tests_total"]
    # A reply: the method taken out of it is the candidate, the reply kept beside it.
    reply = next(r for r in data["predictions"] if (r["model"], r["task"], r["sample"]) ==
                 ("modelA", ITEM, 1))
    assert (run_dir / reply["candidate"] / "response.md").read_text().startswith("Here it is")
    assert "```" not in (run_dir / reply["candidate"] / "candidate.py").read_text()


def test_report_per_model(judged: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    run_dir, data = judged
    found = verdicts(run_dir, data["predictions"])
    proc = run_kbtool("report", str(run_dir), "--json", "--csv", str(tmp_path / "csv"))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert list(runs) == [f"{run_dir} [{m}]" for m in ("modelA", "modelB", "modelC")]
    timed = [v for v in found.values() if v["status"] == "ok" and v["kind"] == "perf"
             and v["outcome"] == "timed"]
    calibrated = all(v["calibrated"] for v in timed)
    for model in ("modelA", "modelB", "modelC"):
        report = runs[f"{run_dir} [{model}]"]
        mine = [r for r in data["predictions"] if r["model"] == model]
        assert report["model"] == model and report["n_tasks"] == 2
        assert report["statuses"]["total_candidates"] == len(mine)
        # Opt@K (GSO): the model's first K predictions, in the file's order; calibration is
        # the task's, from every model's timed evaluations (modelC timed none of its own).
        opt = report["kinds"]["perf"]["opt_at_k"]["opt_base"]
        first = [found[(model, PERF, s)]["opt_base"] for s in range(3)
                 if (model, PERF, s) in found]
        assert "1" in opt
        for k in opt:
            expected = float(any(first[:int(k)])) if calibrated else None
            assert opt[k] == expected, (model, k, opt)
        pass_k = report["predictions"]["pass_at_k"]
        for k in report["predictions"]["k"]:
            assert pass_k[str(k)] == pytest.approx(
                expected_pass_at_k(mine, list(report["tasks"]), k))
    assert runs[f"{run_dir} [modelC]"]["kinds"]["perf"]["scored_tasks"] == int(calibrated)
    # Repository items: the pass rate of each model (its predictions are one turn each).
    assert runs[f"{run_dir} [modelA]"]["kinds"]["repo"]["by_task"]["all"]["pass_rate"] == [1.0]
    rows = (tmp_path / "csv" / "predictions_pass_at_k.csv").read_text().splitlines()
    assert rows[0].startswith("run,metric") and len(rows) == 4
