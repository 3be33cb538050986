"""The multiturn strategy end to end (kbtool run, offline answers), its report section, resume,
the ablations and a model whose context overflows (a real OpenAI-compatible server)."""

from __future__ import annotations

import csv
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from kbtool.config import Config
from kbtool.monitor.state import RunState
from kbtool_plugins.repo.dataset import RepoSource
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.strategy import NO_FEEDBACK
from tests.helpers import run_kbtool
from tests.helpers.llm_server import LLMServer

# Replay answers (tasks/transcripts/repo.yaml) by item number: 1 wrong then right, 3 never
# right, 4 right at once.
ITEMS = ("repo/django/method_gen/1_", "repo/django/method_gen/3_", "repo/django/method_gen/4_")


def ids() -> list[str]:
    tasks = [t.id for t in RepoSource().tasks(Config())]
    return [next(t for t in tasks if t.startswith(prefix)) for prefix in ITEMS]


def calls(run: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((run / "calls").glob("*.json"))]


def turn_prompts(run: Path, task: str) -> list[str]:
    folder = next((run / "tasks").glob(f"{task.replace('/', '_')}*"))
    return [(folder / "phase0" / "agent0" / f"step{s}" / "prompt.md").read_text()
            for s in range(3) if (folder / "phase0" / "agent0" / f"step{s}").is_dir()]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, repo_cache: Path,
            django: Repository) -> Path:
    run = tmp_path_factory.mktemp("multiturn") / "run"
    proc = run_kbtool("run", *ids(), "strategy=multiturn", "model_name=replay/builtin",
                      "max_iter=3", f"run_dir={run}", f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    return run


def test_each_item_gets_turns_until_its_tests_pass(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    first, never, at_once = ids()
    assert summary["strategy"] == "multiturn"
    assert summary["tasks"][first]["correct"] and summary["tasks"][first]["candidates"] == 2
    assert not summary["tasks"][never]["correct"] and summary["tasks"][never]["candidates"] == 3
    assert summary["tasks"][at_once]["candidates"] == 1
    # The second turn was told what the tests said of the first.
    second = turn_prompts(run_dir, first)[1]
    assert "selected tests passed" in second and "FAILED" in second


def test_report_by_turn_and_its_plot(run_dir: Path, tmp_path: Path) -> None:
    proc = run_kbtool("report", str(run_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    section = json.loads(proc.stdout)["kinds"]["repo"]
    every = section["by_task"]["all"]
    assert section["turns"] == 3 and every["items"] == 3
    assert every["pass_rate"] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert every["mean_tests_passed"][1] >= every["mean_tests_passed"][0]
    assert section["by_task"]["method_gen"]["items"] == 3
    proc = run_kbtool("report", str(run_dir), "--csv", str(tmp_path / "csv"),
                      "--plots", str(tmp_path / "plots"))
    assert proc.returncode == 0, proc.stderr
    assert "repo: pass rate and share of tests passed, by turn" in proc.stdout
    rows = list(csv.reader((tmp_path / "csv" / "repo_turns.csv").open()))
    assert rows[0][-5:] == ["task", "items", "turn", "pass_rate", "mean_tests_passed"]
    assert (tmp_path / "plots" / "repo_turns.png").stat().st_size > 1000


def test_the_monitor_sees_items_and_their_turns(run_dir: Path) -> None:
    state = RunState()
    state.fold([json.loads(line) for line in
                (run_dir / "events.jsonl").read_text().splitlines()])
    first = state.tasks[ids()[0]]
    turns = sorted(first.steps.values(), key=lambda s: s.step)
    assert [s.status for s in turns] == ["incorrect", "ok"]
    assert turns[1].details["tests_passed"] == turns[1].details["tests_total"]


def test_resume_repeats_nothing(run_dir: Path) -> None:
    before = sorted(p.name for p in (run_dir / "evals").glob("*.json"))
    proc = run_kbtool("run", "--resume", str(run_dir))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (run_dir / "evals").glob("*.json")) == before
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    resumed = events[max(i for i, e in enumerate(events) if e["type"] == "run_started"):]
    assert all(e["cached"] for e in resumed if e["type"] == "llm_call")


def test_no_feedback_and_no_history(tmp_path: Path, repo_cache: Path,
                                    django: Repository) -> None:
    never = ids()[1]
    run = tmp_path / "ablation"
    proc = run_kbtool("run", never, "strategy=multiturn", "model_name=replay/builtin",
                      "max_iter=2", "feedback=false", "history=false", f"run_dir={run}",
                      f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    prompts = turn_prompts(run, never)
    assert NO_FEEDBACK in prompts[1] and "FAILED" not in prompts[1]
    # Without history each call is the task alone: system + one user message.
    assert {len(c["request"]["messages"]) for c in calls(run)} == {2}


def test_a_context_overflow_drops_the_oldest_turn(tmp_path: Path, repo_cache: Path,
                                                  django: Repository) -> None:
    filler = "I am still thinking about it. " * 40  # no code: every turn is a format error
    with LLMServer(replies=filler) as server:
        def reply(body: dict[str, Any]) -> str:
            if server.max_prompt_words is None:  # sized on the first prompt: turn 2 overflows
                first = sum(len(str(m["content"]).split()) for m in body["messages"])
                server.max_prompt_words = first + len(filler.split()) * 3 // 2 + 60
            return filler

        server.set_replies(reply)
        # A model name of its own: no answer of an earlier session comes from kbtool's cache.
        proc = run_kbtool("run", ids()[0], "strategy=multiturn",
                          f"model_name=openai/overflow-{uuid.uuid4().hex[:8]}",
                          "max_iter=3", f"run_dir={tmp_path / 'run'}",
                          f"cache_dir={repo_cache}", "max_retries=0",
                          env={"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "k"})
        assert proc.returncode == 0, proc.stderr
        statuses = [r.status for r in server.requests]
        sizes = [len(r.body["messages"]) for r in server.requests]
    assert statuses == [200, 200, 400, 200]
    # Turn 3 overflowed with system + 5 messages; sent again without the oldest pair.
    assert sizes == [2, 4, 6, 4]
