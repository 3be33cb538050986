"""`kbtool run`: the search over tasks with the offline replay provider, run directories,
dry runs, budgets and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kbtool.runs.store import read_events
from kbtool.runs.summary import RunSummary
from kbtool.search.engine import split_samples
from kbtool.search.prompts import parse_ideas
from kbtool.ui.display import print_run_summary
from kbtool_plugins.kernelbench.kind import KernelBenchKind
from tests.helpers import RUN_PERF, run_kbtool

extract_code = KernelBenchKind().extract_candidate

QUICK = ["--config-profile", "quick", "baselines=[eager]", "num_samples=2", "num_phases=2",
         "max_fix_attempts=1"]

GOOD = "Here you go.\n```python\nimport torch\nimport torch.nn as nn\n\nclass ModelNew(nn.Module):\n" \
       "    def forward(self, x):\n        return torch.clamp_min(x, 0.0)\n```\n"
WRONG = GOOD.replace("clamp_min(x, 0.0)", "clamp_min(x, 0.5)")


def transcript(tmp_path: Path, **kinds: object) -> Path:
    path = tmp_path / "transcript.yaml"
    path.write_text(yaml.safe_dump({"label": "test", "default": {"ideas": "1. a\n2. b\n"},
                                    "tasks": {"builtin/1/2_ReLU": kinds}}))
    return path


def test_extract_code_and_ideas() -> None:
    reply = "text\n```\nnot it\n```\n```python\nclass ModelNew:\n    pass\n```\n"
    assert extract_code(reply) == "class ModelNew:\n    pass\n"
    assert extract_code("```py\nx = 1\n```") == "x = 1\n"
    assert extract_code("no code at all") is None
    assert parse_ideas("1. fuse\n2) tile\n- vectorise\n", 5) == \
        ["fuse", "tile", "vectorise", "fuse", "tile"]
    assert parse_ideas("", 2) == ["make it faster", "make it faster"]
    assert split_samples(10, 4) == [3, 3, 2, 2]


def test_search_with_replay_writes_a_complete_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = transcript(tmp_path, generate=[WRONG, "no code here, sorry"], fix=[GOOD],
                        improve=[GOOD])
    proc = run_kbtool("run", "builtin/1/2", f"run_dir={run_dir}", f"replay_path={script}",
                      "progress_interval_s=0.2", *QUICK)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    task = summary["tasks"]["builtin/1/2_ReLU"]
    assert summary["status"] == "finished" and task["correct"]
    assert task["statuses"]["incorrect"] >= 1 and task["statuses"]["ok"] >= 1
    assert (run_dir / task["best_solution"]).read_text() == extract_code(GOOD)
    assert task["baselines_ms"]["eager"] > 0 and task["speedup"]["eager"] > 0
    assert len(task["phases"]) == 2
    events = read_events(run_dir)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished"
    assert {"llm_call", "eval", "format_error", "phase_done", "task_done"} <= set(kinds)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    # Every step keeps its prompt, reply, candidate and verdict.
    step = run_dir / "tasks" / "builtin_1_2_ReLU" / "phase0" / "agent0" / "step0"
    assert {p.name for p in step.iterdir()} == {"prompt.md", "response.md", "candidate.py",
                                               "eval.json"}
    assert "Focus on this idea: a" in (step / "prompt.md").read_text()
    fix = (step.parent / "step1" / "prompt.md").read_text()
    assert "outputs are wrong" in fix and "Max abs difference" in fix
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["num_samples"] == 2
    assert summary["totals"]["calls"] == len([e for e in events if e["type"] == "llm_call"])
    assert "run finished" in proc.stdout
    # stderr is a pipe here, as in a batch job's log: the run says what it does as it goes,
    # in order, with progress lines between.
    lines = proc.stderr.splitlines()
    said = [first_line(lines, start) for start in (
        f"run directory: {run_dir} (1 task, at most 9 LLM calls)",
        "starting the local evaluation backend (1 evaluator)",
        "run started: 1 task, model replay/builtin, strategy tree",
        "task builtin/1/2_ReLU: started", "task builtin/1/2_ReLU: baseline eager ",
        "eval builtin/1/2_ReLU/p0/a0/s0: incorrect", "task builtin/1/2_ReLU: phase 0 done",
        "task builtin/1/2_ReLU: phase 1 done", "task builtin/1/2_ReLU: done, best eager",
        "run finished")]
    assert said == sorted(said), proc.stderr
    beats = [line for line in lines if line.startswith("progress ")]
    assert beats, proc.stderr
    assert all(" tasks done (" in b and "of at most 9 LLM calls" in b for b in beats), beats


def first_line(lines: list[str], start: str) -> int:
    found = [i for i, line in enumerate(lines) if line.startswith(start)]
    assert found, f"no line starts with {start!r}:\n" + "\n".join(lines)
    return found[0]


def test_dry_run_spends_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "dry"
    proc = run_kbtool("run", "level=1", "task_start=1", "task_end=2", f"run_dir={run_dir}",
                      "dry_run=true", *QUICK)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((run_dir / "plan.json").read_text())
    assert set(plan["tasks"]) == {"builtin/1/1_Matmul", "builtin/1/2_ReLU"}
    assert plan["max_llm_calls"] == 2 * (1 + 2 * 2 * 2)
    prompt = (run_dir / "plan" / "builtin_1_1_Matmul" / "generate_prompt.md").read_text()
    assert "class Model" in prompt and "torch.matmul" in prompt
    assert not (run_dir / "calls").exists() and not (run_dir / "evals").exists()
    assert "nothing spent" in proc.stdout


def test_budget_cap_ends_cleanly_and_resume_repeats_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = transcript(tmp_path, generate=[WRONG], fix=[GOOD], improve=[GOOD])
    first = run_kbtool("run", "builtin/1/2", f"run_dir={run_dir}", f"replay_path={script}",
                       "max_calls=3", *QUICK)
    assert first.returncode == 0, first.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "budget_exhausted" and summary["totals"]["calls"] == 3
    assert "max_calls=3" in summary["budget"]
    recorded = {p.name for p in (run_dir / "calls").iterdir()}
    evals_before = len(list((run_dir / "evals").iterdir()))

    resumed = run_kbtool("run", "--resume", str(run_dir), "max_calls=null")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["totals"]["cached_calls"] == 3  # the first three answers were reused
    assert recorded <= {p.name for p in (run_dir / "calls").iterdir()}
    events = read_events(run_dir)
    samples = [e["sample"] for e in events if e["type"] == "llm_call"]
    assert len(samples) == len(set(samples))  # no call logged (or made) twice
    steps = [e["sample"] for e in events if e["type"] == "eval"]
    assert len(steps) == len(set(steps))
    assert summary["totals"]["evaluations"] == len(list((run_dir / "evals").iterdir())) \
        > evals_before
    assert [e["resumed"] for e in events if e["type"] == "run_started"] == [False, True]


def test_budget_strategy_respects_its_query_budget(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    script = transcript(tmp_path, generate=[WRONG], fix=[WRONG], improve=[GOOD])
    proc = run_kbtool("run", "builtin/1/2", f"run_dir={run_dir}", f"replay_path={script}",
                      "strategy=budget", "query_budget=5", *QUICK)
    assert proc.returncode == 0, proc.stderr
    calls = [e for e in read_events(run_dir) if e["type"] == "llm_call"]
    assert 3 <= len(calls) <= 5


def test_templates_can_be_overridden(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "ideas.md").write_text("MY IDEAS PROMPT for\n$reference\n")
    run_dir = tmp_path / "dry"
    proc = run_kbtool("run", "builtin/1/2", f"run_dir={run_dir}", f"templates_dir={templates}",
                      "dry_run=true", *QUICK)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "plan" / "builtin_1_2_ReLU" / "ideas_prompt.md").read_text() \
        .startswith("MY IDEAS PROMPT")
    (templates / "ideas.md").write_text("$nonsense\n")
    bad = run_kbtool("run", "builtin/1/2", f"run_dir={tmp_path / 'dry2'}",
                     f"templates_dir={templates}", "dry_run=true", *QUICK)
    assert bad.returncode == 2 and "$nonsense" in bad.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["model_name=nosuch/model"], "unknown LLM provider 'nosuch'"),
    (["model_name=gpt-4o"], "needs a provider"),
    (["strategy=greedy"], "unknown strategy 'greedy'"),
    (["worker_input_dir=/tmp/in"], "needs both worker_input_dir and worker_output_dir"),
    (["num_samples=0"], "config key 'num_samples'"),
])
def test_run_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_kbtool("run", "builtin/1/2", f"run_dir={tmp_path / 'r'}", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_resume_needs_a_run_dir(tmp_path: Path) -> None:
    proc = run_kbtool("run", "--resume", str(tmp_path))
    assert proc.returncode == 2 and "not a kbtool run directory" in proc.stderr


def test_the_default_run_dir_holds_the_run_and_counts_its_evaluations(tmp_path: Path) -> None:
    """run_dir defaults to data_dir/runs/<time>, relative (data_dir is "."): the run's
    files went to runs/<time>/runs/<time>/ and the summary said "0 evaluations"."""
    script = transcript(tmp_path, generate=[WRONG], fix=[GOOD])
    proc = run_kbtool("run", "builtin/1/2", f"replay_path={script}", *QUICK[:3],
                      "num_samples=1", "num_phases=1", "max_fix_attempts=1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    assert not (run_dir / "runs").exists()
    evals = list((run_dir / "evals").glob("*.json"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["totals"]["evaluations"] == len(evals) == 2
    assert (run_dir / summary["tasks"]["builtin/1/2_ReLU"]["best_solution"]).is_file()
    assert "2 evaluations" in proc.stdout


def test_the_end_of_run_line_of_a_task_timed_without_a_baseline(
        capsys: pytest.CaptureFixture[str]) -> None:
    """perf/packaging-canonicalize as recorded in tests/fixtures/run_perf: a runtime, no
    speedup against a core baseline; the line said "best 205.5 ms ()"."""
    summary = RunSummary.model_validate_json((RUN_PERF / "summary.json").read_text())
    print_run_summary(summary)
    out = capsys.readouterr().out
    assert "perf/packaging-canonicalize: best 205.5 ms; 1/1 candidates correct\n" in out
    assert "()" not in out
