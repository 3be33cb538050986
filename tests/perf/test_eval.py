"""The perf kind end to end on real releases (packaging 25.0 -> 26.0 from PyPI): the CLI
contract, verdicts of honest and broken patches, and a hostile-patch red team."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from kbtool.config import Config
from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.result import EvalResult
from kbtool.task import catalog
from kbtool.task.model import Task
from kbtool_plugins.perf.releases import file_diff
from tests.helpers import run_kbtool
from tests.perf.conftest import QUICK, TASK, UTILS, edit

OLD_BODY = '    value = _canonicalize_regex.sub("-", name).lower()\n'
FAST_BODY = ('    value = name.lower().replace("_", "-").replace(".", "-")\n'
             '    while "--" in value:\n        value = value.replace("--", "-")\n')
SETTINGS = [f"{k}={v}" for k, v in QUICK.items()]


def utils_patch(baseline_file: Callable[[str], str], old: str, new: str,
                rel: str = UTILS) -> str:
    text = baseline_file(rel)
    return file_diff(rel, text, edit(text, old, new))


def evaluate(evaluator: Evaluator, task: Task, patch: str, tmp_path: Path,
             config: Config | None = None) -> EvalResult:
    path = tmp_path / "candidate.diff"
    path.write_text(patch)
    return evaluator.evaluate(task, path, config)


# -- the CLI contract --------------------------------------------------------------------------

def test_tasks_list_and_show(perf_cache: Path) -> None:
    listed = run_kbtool("tasks", "list", "source=perf")
    assert listed.returncode == 0, listed.stderr
    ids = listed.stdout.split()
    assert len(ids) >= 5 and TASK in ids and "perf/more-itertools-control" in ids
    shown = run_kbtool("tasks", "show", TASK, "--json", f"cache_dir={perf_cache}")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert (data["package"], data["baseline"], data["human"]) == ("packaging", "25.0", "26.0")
    assert data["human_patch"].startswith("diff --git a/src/packaging/")
    assert "canonicalize_name" in data["human_patch"] and "tests/" not in data["human_patch"]


def test_eval_the_human_patch_as_a_candidate(perf_cache: Path, tmp_path: Path) -> None:
    """The human's own improvement, submitted as the agent's patch: correct, faster than
    the baseline, about as fast as the human release, every field of the contract."""
    shown = run_kbtool("tasks", "show", TASK, "--json", f"cache_dir={perf_cache}")
    patch = tmp_path / "human.diff"
    patch.write_text(json.loads(shown.stdout)["human_patch"])
    proc = run_kbtool("eval", TASK, "--solution", str(patch), "--json", f"cache_dir={perf_cache}",
                      "perf.min_rounds=4", "perf.max_rounds=4", "perf.equivalence_seeds=1",
                      "perf.progress_s=0.001")
    assert proc.returncode == 0, proc.stderr
    # A line per round on stderr while it times (a terminal, a batch job's log).
    assert f"kbtool: {TASK}: timing round 3 (at most 4): speedup " in proc.stderr, proc.stderr
    # Its last: why the rounds stopped (the interval may reach its target at the 4th).
    assert re.search(f"kbtool: {TASK}: timing 4 rounds, (max_rounds|converged): speedup ",
                     proc.stderr), proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["correct"] is True, result["error"]
    assert result["error"] is None and isinstance(result["flags"], list) and result["env"]
    low, high = result["speedup_ci"]
    assert low <= result["speedup"] <= high and result["speedup"] > 1.2
    assert result["human_speedup"] > 1.1 and 0.6 < result["agent_vs_human"] < 1.6
    assert isinstance(result["significant"], bool) and isinstance(result["calibrated"], bool)
    assert result["patch_method"] == "git apply" and result["tests"].endswith("s")
    assert result["tests_passed"] > 0 and result["test_pass_rate"] == 1.0
    assert result["workloads"][0]["name"] == "canonicalize_names"
    # The score is the hidden workload's; the human patch is no overfit of the visible one.
    assert result["scored_on"] == "hidden" and result["workloads"][1]["hidden"] is True
    assert "overfits_workload" not in result["flags"] and result["overfit"] < 1.15
    assert result["outcome"] == "timed" and result["verdict"] in ("faster", "inconclusive")
    stats = result["gso"]["patch_base"]
    assert stats["gm"] > 1.2 and stats["slowed"] == 0 and stats["gsd"] is None
    assert set(result["gso"]) == {"patch_base", "commit_base", "patch_commit"}
    # One source of truth for noise: the core field, the flag and the machine's account.
    assert result["noisy"] == ("noisy" in result["flags"]) and result["noise"]["cpus"] >= 1


def test_eval_bad_input_is_one_line(perf_cache: Path, tmp_path: Path) -> None:
    missing = run_kbtool("eval", "perf/no-such-task", "--solution", __file__)
    assert missing.returncode == 2 and "unknown task" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    broken = tmp_path / "tasks"
    broken.mkdir()
    (broken / "bad.yaml").write_text("package: x\nmodule: x\nbaseline: '1'\nworkloads: []\n")
    proc = run_kbtool("tasks", "list", "source=perf", f"perf_tasks_dir={broken}")
    assert proc.returncode == 2 and "bad.yaml" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


# -- verdicts -------------------------------------------------------------------------------

def test_the_null_patch(perf_evaluator: Evaluator, canonicalize_task: Task,
                        tmp_path: Path) -> None:
    result = evaluate(perf_evaluator, canonicalize_task, "", tmp_path)
    assert result.status.value == "ok", result.error
    extra = result.model_extra or {}
    assert extra["patch_method"] == "empty" and extra["patch_files"] == []
    assert extra["outcome"] == "empty_patch" and extra["opt_base"] is False
    assert result.speedup_ci is not None and result.speedup_ci[0] < 1.25
    assert 0.7 < (result.speedup or 0) < 1.4
    assert extra["moved_out_ms"] is None or extra["moved_out_ms"] < 30


def test_an_honest_patch_is_correct_and_faster(perf_evaluator: Evaluator,
                                               canonicalize_task: Task, tmp_path: Path,
                                               baseline_file: Callable[[str], str]) -> None:
    patch = utils_patch(baseline_file, OLD_BODY, FAST_BODY)
    result = evaluate(perf_evaluator, canonicalize_task, patch, tmp_path)
    assert result.status.value == "ok", result.error
    assert (result.speedup or 0) > 1.2 and result.runtime_ms and result.baseline_ms
    assert (result.model_extra or {})["patch_files"] == [UTILS]


def test_a_wrong_patch_is_incorrect_on_fresh_inputs(perf_evaluator: Evaluator,
                                                    canonicalize_task: Task, tmp_path: Path,
                                                    baseline_file: Callable[[str], str]) -> None:
    # Forgets to fold runs of separators into one.
    wrong = '    value = name.lower().replace("_", "-").replace(".", "-")\n'
    result = evaluate(perf_evaluator, canonicalize_task,
                      utils_patch(baseline_file, OLD_BODY, wrong), tmp_path)
    assert result.status.value == "incorrect" and "fresh inputs" in (result.error or "")
    assert result.speedup is None and (result.model_extra or {})["outcome"] == "wrong_results"


def test_a_patch_failing_the_package_tests_is_incorrect(
        perf_evaluator: Evaluator, canonicalize_task: Task, tmp_path: Path,
        baseline_file: Callable[[str], str]) -> None:
    # The workload never validates; the package's tests do.
    patch = utils_patch(baseline_file, "    if validate and not _validate_regex.match(name):",
                        "    if False:")
    result = evaluate(perf_evaluator, canonicalize_task, patch, tmp_path)
    assert result.status.value == "incorrect"
    assert "package's tests fail" in (result.error or ""), result.error
    extra = result.model_extra or {}
    assert extra["outcome"] == "tests_failed" and extra["tests_failed"] >= 1
    assert extra["tests_passed"] > 0 and 0 < extra["test_pass_rate"] < 1


def test_patches_that_do_not_apply_or_compile(perf_evaluator: Evaluator,
                                              canonicalize_task: Task, tmp_path: Path,
                                              baseline_file: Callable[[str], str]) -> None:
    garbage = evaluate(perf_evaluator, canonicalize_task, "this is not a diff\n", tmp_path)
    assert garbage.status.value == "compile_error" and "does not apply" in (garbage.error or "")
    assert (garbage.model_extra or {})["outcome"] == "does_not_apply"
    syntax = evaluate(perf_evaluator, canonicalize_task,
                      utils_patch(baseline_file, OLD_BODY, "    value = (\n"), tmp_path)
    assert syntax.status.value == "compile_error" and "does not compile" in (syntax.error or "")
    assert (syntax.model_extra or {})["outcome"] == "does_not_compile"


def test_through_the_queue_a_worker_gives_the_same_fields(perf_cache: Path,
                                                          canonicalize_task: Task,
                                                          tmp_path: Path) -> None:
    """The queue, the worker and the backend carry the perf kind unchanged: the packed task
    (workloads inline) travels as a job, a `kbtool worker serve` process prepares and
    checks it, and `kbtool eval` prints the same fields."""
    import os
    import signal
    import subprocess
    import sys

    packed = catalog.kind_of(canonicalize_task).pack(canonicalize_task)
    assert packed.path is None and "source" in packed.payload["workloads"][0]
    queue = [f"worker_input_dir={tmp_path / 'in'}", f"worker_output_dir={tmp_path / 'out'}"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "kbtool", "worker", "serve", "--max-jobs", "1", *queue,
         "worker_poll_s=0.1", f"cache_dir={perf_cache}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    candidate = tmp_path / "null.diff"
    candidate.write_text("")
    try:
        proc = run_kbtool("eval", TASK, "--solution", str(candidate), "--json", *queue,
                          "queue_wait_s=300", *SETTINGS)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["status"] == "ok", result["error"]
        for field in ("speedup", "speedup_ci", "human_speedup", "agent_vs_human",
                      "significant", "calibrated"):
            assert field in result, field
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)


def test_a_task_with_a_main_release_scores_opt_main(perf_evaluator: Evaluator,
                                                     perf_config: Config, tmp_path: Path,
                                                     baseline_file: Callable[[str], str]) -> None:
    """GSO's opt_main: a later release (``main``) timed as a fourth arm; the agent against
    it on the scored workloads."""
    task = catalog.resolve("perf/canonicalize-with-main", perf_config)
    result = evaluate(perf_evaluator, task, utils_patch(baseline_file, OLD_BODY, FAST_BODY),
                      tmp_path)
    assert result.status.value == "ok", result.error
    extra = result.model_extra or {}
    assert isinstance(extra["opt_main"], bool) and extra["main_speedup"] > 1.2
    assert set(extra["gso"]) == {"patch_base", "commit_base", "patch_commit", "patch_main"}
    null = evaluate(perf_evaluator, canonicalize_task_of(perf_config), "", tmp_path)
    assert (null.model_extra or {})["opt_main"] is None  # no main named: not scored


def canonicalize_task_of(config: Config) -> Task:
    return catalog.resolve(TASK, config)


def test_a_slower_patch_is_called_slower(perf_evaluator: Evaluator, canonicalize_task: Task,
                                         tmp_path: Path,
                                         baseline_file: Callable[[str], str]) -> None:
    """Correct, and four times the work: the interval lies below 1."""
    slow = OLD_BODY + "".join("    value = _canonicalize_regex.sub(\"-\", name).lower()\n"
                              for _ in range(3))
    result = evaluate(perf_evaluator, canonicalize_task, utils_patch(baseline_file, OLD_BODY,
                                                                     slow), tmp_path)
    assert result.status.value == "ok", result.error
    extra = result.model_extra or {}
    assert extra["verdict"] == "slower" and result.significant is False, result.speedup_ci
    assert extra["gso"]["patch_base"]["slowed"] == 1.0
