"""Eval-only batch mode: every selected task against ``baseline`` or a folder of solutions,
through whichever evaluation backend the settings choose (local, or the worker queue)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kbtool.config import Config
from kbtool.errors import KbtoolError, UsageError
from kbtool.evaluation.backend import EvalBackend
from kbtool.evaluation.result import EvalResult
from kbtool.task.catalog import check_settings, kind_of
from kbtool.task.model import Task


def solution_for(task: Task, folder: Path) -> Path | None:
    """A solution file named after the task: ``19_ReLU.py``, ``level1_19_ReLU.py`` or the id
    with ``/`` as ``_`` (``kernelbench_1_19_ReLU.py``); the suffix is the task kind's."""
    suffix = kind_of(task).candidate_suffix
    names = [f"{task.name}{suffix}", task.id.replace("/", "_") + suffix]
    if task.level is not None:
        names.insert(1, f"level{task.level}_{task.name}{suffix}")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


@dataclass
class BatchOutcome:
    results: list[EvalResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # task id -> why it did not run


def run_batch(backend: EvalBackend, config: Config, tasks: list[Task], solutions: str,
              out_path: Path, on_task: Callable[[Task, EvalResult | str], None]) -> BatchOutcome:
    """Evaluate each task; append each result to ``out_path`` (JSON lines) as it comes, so
    an interrupted batch keeps what it measured."""
    if not tasks:
        raise UsageError("no tasks selected (check source, level, task_start, task_end)")
    folder = None if solutions == "baseline" else Path(solutions)
    if folder is not None and not folder.is_dir():
        raise UsageError(f"--solutions must be 'baseline' or a folder; {solutions} is neither")
    check_settings(tasks, config)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = BatchOutcome()
    with open(out_path, "a") as out:
        for task in tasks:
            try:
                result = _one(backend, task, folder, kind_of(task).configure(task, config))
            except KbtoolError as exc:
                outcome.skipped[task.id] = str(exc)
                # The file says why a task did not run, so it lists every selected task.
                out.write(json.dumps({"task": task.id, "skipped": str(exc)}) + "\n")
                out.flush()
                on_task(task, str(exc))
                continue
            out.write(result.model_dump_json() + "\n")
            out.flush()
            outcome.results.append(result)
            on_task(task, result)
    return outcome


def _one(backend: EvalBackend, task: Task, folder: Path | None, config: Config) -> EvalResult:
    if folder is None:
        return backend.baseline_result(task, None, config)
    solution = solution_for(task, folder)
    if solution is None:
        raise UsageError(f"no solution file for {task.id} in {folder}")
    return evaluate_solution(backend, task, solution, config)


def evaluate_solution(backend: EvalBackend, task: Task, solution: Path,
                      config: Config) -> EvalResult:
    """A solution file evaluated as ``kbtool run`` evaluates a reply: the candidate is taken
    out of it by the task kind (``candidate_from_file``; plain code stays as it is), and the
    result names the file given."""
    try:
        text = solution.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read the solution {solution}: {exc}") from None
    candidate = kind_of(task).candidate_from_file(text)
    if candidate == text:
        return backend.evaluate(task, solution, config)
    with tempfile.TemporaryDirectory(prefix="kbtool-solution-") as folder:
        extracted = Path(folder) / f"{solution.stem}{kind_of(task).candidate_suffix}"
        extracted.write_text(candidate)
        result = backend.evaluate(task, extracted, config)
    return result.model_copy(update={"solution": str(solution)})
