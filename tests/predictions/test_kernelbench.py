"""KernelBench's generated-kernel folders as predictions: two runs (models) on built-in
problems judged into a run directory, continued without judging anything twice, reported
per model, followed by the monitor; bad input refused in one line with nothing lost."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kbtool.monitor.state import RunFollower
from kbtool.task import catalog
from tests.helpers import SOLUTIONS, make_config, run_kbtool
from tests.predictions import expected_pass_at_k

SETTINGS = ("--config-profile", "quick", "device=cpu")
# (model, level, problem, sample) -> solution: builtin/1/1 is Matmul, builtin/1/2 ReLU.
KERNELS = {("modelA", 1, 2, 0): "level1_2_ReLU_torch.py",
           ("modelA", 1, 1, 0): "level1_1_Matmul_wrong.py",
           ("modelB", 1, 2, 0): "level1_2_ReLU_torch.py",
           ("modelB", 1, 2, 1): "level1_1_Matmul_syntax_error.py",
           ("modelB", 1, 2, 3): "level1_2_ReLU_torch.py"}   # sample 2 missing: order by S


@dataclass
class Judged:
    runs: Path          # KernelBench's runs/ folder
    run_dir: Path
    first: dict[str, Any]
    stderr: str


def write_kernels(runs: Path, kernels: dict[tuple[str, int, int, int], str]) -> None:
    for (model, level, problem, sample), solution in kernels.items():
        folder = runs / model
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(SOLUTIONS / solution,
                    folder / f"level_{level}_problem_{problem}_sample_{sample}_kernel.py")
    (runs / "modelA" / "level_1_problem_2_sample_0_prompt.txt").write_text("not a kernel")


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory) -> Judged:
    root = tmp_path_factory.mktemp("kernels")
    write_kernels(root / "runs", KERNELS)
    run_dir = root / "run"
    proc = run_kbtool("eval", "--predictions", str(root / "runs"), f"run_dir={run_dir}",
                      "--json", *SETTINGS)
    assert proc.returncode == 0, proc.stderr
    return Judged(root / "runs", run_dir, json.loads(proc.stdout), proc.stderr)


def evals(run_dir: Path) -> dict[str, float]:
    """Every evaluation of the run and when its file was written."""
    return {p.name: p.stat().st_mtime_ns for p in (run_dir / "evals").glob("*.json")}


def test_each_prediction_is_judged_into_the_run(judged: Judged) -> None:
    rows = judged.first["predictions"]
    config = make_config(judged.run_dir)
    tasks = {number: catalog.resolve(f"builtin/1/{number}", config).id for number in (1, 2)}
    # Samples in the order of S; the problem numbers are the tasks' level and number.
    assert [(r["model"], r["task"], r["sample"], Path(r["source"]).name) for r in rows] == [
        ("modelA", tasks[1], 0, "level_1_problem_1_sample_0_kernel.py"),
        ("modelA", tasks[2], 0, "level_1_problem_2_sample_0_kernel.py"),
        ("modelB", tasks[2], 0, "level_1_problem_2_sample_0_kernel.py"),
        ("modelB", tasks[2], 1, "level_1_problem_2_sample_1_kernel.py"),
        ("modelB", tasks[2], 2, "level_1_problem_2_sample_3_kernel.py")]
    assert [r["status"] for r in rows] == ["incorrect", "ok", "ok", "compile_error", "ok"]
    # modelB sent one kernel twice: one evaluation, both places hold its verdict.
    assert judged.first["judged"] == 4 and len(evals(judged.run_dir)) == 4
    for row in rows:
        step = judged.run_dir / row["candidate"]
        record = json.loads((step / "prediction.json").read_text())
        assert (record["model"], record["task"], record["sample"]) == \
            (row["model"], row["task"], row["sample"])
        assert json.loads((step / "eval.json").read_text())["status"] == row["status"]
        assert (step / "candidate.py").read_text() == Path(row["source"]).read_text()
    assert "5 predictions of 2 models for 2 tasks: 0 judged already, 5 to judge (4 distinct)" \
        in judged.stderr
    # Without a terminal, a line per verdict (a bar on one).
    assert "eval builtin/1/2_ReLU/p0/a1/s0 (modelB): ok" in judged.stderr
    summary = json.loads((judged.run_dir / "summary.json").read_text())
    assert summary["strategy"] == "predictions" and summary["totals"]["predictions"] == 5


def test_a_second_call_judges_only_what_is_new(judged: Judged) -> None:
    before = evals(judged.run_dir)
    again = run_kbtool("eval", "--predictions", str(judged.runs), f"run_dir={judged.run_dir}",
                       "--json", *SETTINGS)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["judged"] == 0 and evals(judged.run_dir) == before
    assert [r["status"] for r in data["predictions"]] == \
        [r["status"] for r in judged.first["predictions"]]
    assert "5 judged already, 0 to judge" in again.stderr


def test_report_per_model(judged: Judged) -> None:
    proc = run_kbtool("report", str(judged.run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert list(runs) == [f"{judged.run_dir} [modelA]", f"{judged.run_dir} [modelB]"]
    for model, report in zip(("modelA", "modelB"), runs.values(), strict=True):
        mine = [r for r in judged.first["predictions"] if r["model"] == model]
        by_task: dict[str, list[bool]] = {task: [] for task in report["tasks"]}
        for row in mine:
            by_task[row["task"]].append(row["status"] == "ok")
        assert report["model"] == model and report["n_tasks"] == 2
        assert report["statuses"]["total_candidates"] == len(mine)
        # fast_0 is the share of all the run's tasks with a correct prediction of the model.
        share = sum(any(oks) for oks in by_task.values()) / len(by_task)
        assert report["fast_p"]["eager"]["0"] == pytest.approx(share)
        for k in report["predictions"]["k"]:
            assert report["predictions"]["pass_at_k"][str(k)] == pytest.approx(
                expected_pass_at_k(mine, list(by_task), k))
    assert runs[f"{judged.run_dir} [modelA]"]["predictions"]["k"] == [1, 3]
    assert runs[f"{judged.run_dir} [modelB]"]["predictions"]["without_predictions"] == \
        [catalog.resolve("builtin/1/1", make_config(judged.run_dir)).id]
    table = run_kbtool("report", str(judged.run_dir))
    assert table.returncode == 0, table.stderr
    assert "run " + f"{judged.run_dir} [modelB]" in table.stdout
    assert "predictions: pass@k over 2 tasks" in table.stdout and "pass@k" in table.stdout


def test_the_monitor_follows_it(judged: Judged) -> None:
    follower = RunFollower(judged.run_dir)
    follower.poll()
    state = follower.state
    assert set(state.tasks) == {r["task"] for r in judged.first["predictions"]}
    assert state.evaluations == 5 and state.status == "finished"


def test_new_models_and_samples_are_added(judged: Judged, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    shutil.copytree(judged.runs, runs)
    write_kernels(runs, {("modelC", 1, 2, 0): "level1_1_Matmul_syntax_error.py",
                         ("modelA", 1, 2, 5): "level1_1_Matmul_syntax_error.py"})
    run_dir = tmp_path / "run"
    shutil.copytree(judged.run_dir, run_dir)
    before = evals(run_dir)
    proc = run_kbtool("eval", "--predictions", str(runs), f"run_dir={run_dir}", "--json",
                      *SETTINGS)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["judged"] == 2 and len(evals(run_dir)) == 6
    assert all(evals(run_dir)[name] == when for name, when in before.items())
    added = [r for r in data["predictions"] if r["status"] == "compile_error"]
    assert {(r["model"], r["sample"]) for r in added} == {("modelB", 1), ("modelA", 1),
                                                           ("modelC", 0)}
    manifest = json.loads((run_dir / "predictions.json").read_text())
    assert manifest["models"] == ["modelA", "modelB", "modelC"]


def test_bad_input_is_one_line_and_loses_nothing(judged: Judged, tmp_path: Path) -> None:
    before = evals(judged.run_dir)
    good = {"instance_id": "builtin/1/2", "model_name_or_path": "m", "model_patch": ""}
    cases = {
        "not JSON": ('{"instance_id": "builtin/1/2",\n', "preds.jsonl line 1 is not JSON"),
        "a list": ("[1, 2]\n", "preds.jsonl item 1 is not a JSON object"),
        "missing field": (json.dumps(good) + "\n" + json.dumps(
            {k: v for k, v in good.items() if k != "model_patch"}) + "\n",
            "preds.jsonl line 2: missing field 'model_patch'"),
        "wrong type": (json.dumps({**good, "model_name_or_path": 7}),
                       "preds.jsonl line 1: field 'model_name_or_path': Input should be a "
                       "valid string"),
        "unknown instance": (json.dumps({**good, "instance_id": "builtin/1/99_Nope"}),
                             "preds.jsonl line 1: instance_id 'builtin/1/99_Nope': unknown "
                             "task"),
        "empty": ("\n\n", "holds no predictions"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / "preds.jsonl"
        path.write_text(text)
        proc = run_kbtool("eval", "--predictions", str(path), f"run_dir={judged.run_dir}",
                          *SETTINGS)
        assert proc.returncode == 2, (name, proc.stderr)
        assert message in proc.stderr, (name, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    # A KernelBench file of a problem no task has; a kernel that differs from the one the
    # run judged in its place; other settings than the run's; a folder that is no run.
    runs = tmp_path / "runs"
    write_kernels(runs, {("modelA", 1, 99, 0): "level1_2_ReLU_torch.py"})
    changed = tmp_path / "changed"
    write_kernels(changed, {("modelA", 1, 2, 0): "level1_1_Matmul_wrong.py"})
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for args, message in (
            ((str(runs), f"run_dir={judged.run_dir}"), "no task of source builtin with level 1 "
                                                         "and number 99"),
            ((str(changed), f"run_dir={judged.run_dir}"),
             "prediction #1 of modelA for builtin/1/2_ReLU is not the one"),
            ((str(judged.runs), f"run_dir={judged.run_dir}", "timeout_s=77"),
             "judged its predictions with other settings: timeout_s (300.0 -> 77.0)"),
            ((str(judged.runs), f"run_dir={other}"), "exists and is not a predictions run")):
        proc = run_kbtool("eval", "--predictions", *args, *SETTINGS)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert evals(judged.run_dir) == before
    assert json.loads((judged.run_dir / "predictions.json").read_text())["models"] == \
        ["modelA", "modelB"]
    mixed = run_kbtool("eval", "builtin/1/2", "--predictions", str(judged.runs))
    assert mixed.returncode == 2 and "give no TASK" in mixed.stderr
    resumed = run_kbtool("run", "--resume", str(judged.run_dir))  # no search, no LLM
    assert resumed.returncode == 2 and "judges predictions" in resumed.stderr


def test_an_interrupted_call_keeps_what_it_judged(tmp_path: Path) -> None:
    runs = tmp_path / "runs" / "m"
    runs.mkdir(parents=True)
    for sample in range(4):  # distinct kernels that fail to compile: quick verdicts
        (runs / f"level_1_problem_2_sample_{sample}_kernel.py").write_text(
            f"# variant {sample}\n" + (SOLUTIONS / "level1_1_Matmul_syntax_error.py").read_text())
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "kbtool", "eval", "--predictions", str(runs.parent),
            f"run_dir={run_dir}", "--json", *SETTINGS]
    with subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("eval "):
                proc.send_signal(signal.SIGINT)
                break
        proc.communicate(timeout=600)
    assert proc.returncode == 130
    judged = len(evals(run_dir))
    assert judged >= 1
    again = run_kbtool("eval", "--predictions", str(runs.parent), f"run_dir={run_dir}", "--json",
                       *SETTINGS)
    assert again.returncode == 0, again.stderr
    data = json.loads(again.stdout)
    assert data["judged"] == 4 - judged and len(evals(run_dir)) == 4
    assert [r["status"] for r in data["predictions"]] == ["compile_error"] * 4
