"""The repo kind through kbtool's CLI and evaluator: listing, showing, verdicts, prompts."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbtool.config import Config
from kbtool.evaluation.evaluator import Evaluator
from kbtool.task.model import Task
from kbtool_plugins.repo.dataset import RepoSource
from kbtool_plugins.repo.kind import MARK, RepoKind, item_of
from kbtool_plugins.repo.repository import Repository
from tests.helpers import make_config, run_kbtool

REQUIRED = {"task", "file_path", "method_name", "start_line", "end_line", "tests", "original"}


def builtin(task_type: str, repo: str = "django", method: str | None = None) -> Task:
    return next(t for t in RepoSource().tasks(Config())
                if t.id.startswith(f"repo/{repo}/{task_type}/")
                and (method is None or item_of(t).method_name == method))


@pytest.fixture(scope="module")
def evaluator(repo_cache: Path, django: Repository,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluator]:
    # A Podman socket that is not there: repo_engine=podman checks are infrastructure failures.
    old = os.environ.get("CONTAINER_HOST")
    os.environ["CONTAINER_HOST"] = "unix:///nonexistent/podman.sock"
    try:
        config = make_config(tmp_path_factory.mktemp("kind"), device="cpu",
                             cache_dir=str(repo_cache))
        with Evaluator(config) as ev:
            yield ev
    finally:
        if old is None:
            os.environ.pop("CONTAINER_HOST", None)
        else:
            os.environ["CONTAINER_HOST"] = old


def solution(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "candidate.py"
    path.write_text(text)
    return path


def test_tasks_list_and_show(repo_cache: Path, django: Repository) -> None:
    listed = run_kbtool("tasks", "list", "source=repo")
    assert listed.returncode == 0, listed.stderr
    ids = listed.stdout.split()
    assert len([i for i in ids if i.startswith("repo/django/")]) >= 30
    assert len([i for i in ids if i.startswith("repo/packaging/")]) >= 15
    task = builtin("repair")
    shown = run_kbtool("tasks", "show", task.id, "--json", f"cache_dir={repo_cache}")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert set(data) >= REQUIRED
    item = item_of(task)
    assert (data["id"], data["kind"], data["task"]) == (task.id, "repo", "repair")
    assert data["original"] == item.original and data["tests"] == item.tests
    assert data["body_span"] == [item.body_start_line - 1, item.end_line - 1]


def test_eval_json_reports_tests_passed_and_total(repo_cache: Path, tmp_path: Path,
                                                   django: Repository) -> None:
    task = builtin("repair")
    item = item_of(task)
    proc = run_kbtool("eval", task.id, "--solution", str(solution(tmp_path, item.original)),
                      "--json", f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["correct"] is True
    assert result["tests_passed"] == result["tests_total"] == len(item.tests)
    assert result["task_type"] == "repair"


def test_sympy_items_are_judged_by_sympys_own_tests(repo_cache: Path, tmp_path: Path,
                                                    sympy: Repository) -> None:
    """As docs/repo-tasks.md shows: each task type's first SymPy item, its right answer
    passing every test and the injected bug failing some."""
    for task_type in ("method_gen", "completion", "repair"):
        task = builtin(task_type, "sympy")
        item = item_of(task)
        right = item.continuation if task_type == "completion" else item.original
        answers = [(right, "ok")] + ([(item.buggy_method, "incorrect")]
                                     if task_type == "repair" else [])
        for text, status in answers:
            assert text is not None
            proc = run_kbtool("eval", task.id, "--solution", str(solution(tmp_path, text)),
                              "--json", f"cache_dir={repo_cache}")
            assert proc.returncode == 0, proc.stderr
            result = json.loads(proc.stdout)
            assert result["status"] == status, (task.id, result.get("error"))
            assert result["tests_total"] == len(item.tests)
            assert (result["tests_passed"] == len(item.tests)) == (status == "ok")


def test_verdicts(evaluator: Evaluator, tmp_path: Path) -> None:
    repair = builtin("repair")
    item = item_of(repair)
    assert item.buggy_method is not None
    buggy = evaluator.evaluate(repair, solution(tmp_path, item.buggy_method))
    assert buggy.status.value == "incorrect"
    extra = buggy.model_extra or {}
    assert extra["tests_passed"] < extra["tests_total"] == len(item.tests)
    assert "selected tests passed" in (buggy.error or "")
    wrong_name = evaluator.evaluate(repair, solution(
        tmp_path, item.original.replace(f"def {item.method_name}(", "def renamed(", 1)))
    assert wrong_name.status.value == "compile_error"
    assert f"must be named {item.method_name!r}" in (wrong_name.error or "")
    completion = builtin("completion")
    rest = item_of(completion).continuation
    assert rest is not None
    assert evaluator.evaluate(completion, solution(tmp_path, rest)).status.value == "ok"


def test_hostile_candidates_through_the_kind(evaluator: Evaluator, tmp_path: Path) -> None:
    task = builtin("completion", method="slugify")
    exits = "def slugify(value, allow_unicode=False):\n    import os\n    os._exit(0)\n"
    assert evaluator.evaluate(task, solution(tmp_path, exits)).status.value == "incorrect"
    writes = ("def slugify(value, allow_unicode=False):\n"
              "    open(__file__.replace('text.py', 'planted.py'), 'w').write('x = 1')\n"
              "    return value\n")
    result = evaluator.evaluate(task, solution(tmp_path, writes))
    assert result.status.value == "rejected"
    assert any("planted.py" in f for f in result.findings)


def test_tests_that_cannot_run_are_infrastructure_not_the_model(evaluator: Evaluator,
                                                                tmp_path: Path) -> None:
    task = builtin("repair")
    config = evaluator.config.model_copy(update={"sections": {
        "repo": {"repo_engine": "podman", "infra_retries": 1}}})
    result = evaluator.evaluate(task, solution(tmp_path, item_of(task).original), config)
    assert result.status.value == "runtime_error"
    assert "infrastructure" in result.flags
    assert "podman" in (result.model_extra or {})["infrastructure_error"]


def test_prompts_show_what_each_task_gives() -> None:
    kind = RepoKind()
    gen = builtin("method_gen")
    context = kind.prompt_context(gen, Config())["context"]
    item = item_of(gen)
    assert MARK.format(what="the body goes here") in context
    assert item.body not in context and item.declaration in context
    completion = builtin("completion")
    context = kind.prompt_context(completion, Config())["context"]
    assert item_of(completion).half_method in context  # type: ignore[operator]
    assert item_of(completion).continuation not in context  # type: ignore[operator]
    repair = builtin("repair")
    values = kind.prompt_context(repair, Config())
    assert item_of(repair).buggy_method in values["context"]  # type: ignore[operator]
    assert "Output of the failing tests" in values["failing_output"]
    assert item_of(repair).original not in values["context"]
