"""Eval-only batch mode: every selected task against ``baseline`` or a folder of solutions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kbtool_plugins.kernelbench.problem import size_constants

from kbtool.config.settings import Config
from kbtool.errors import KbtoolError
from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.result import EvalResult
from kbtool.task.model import Task


def solution_for(task: Task, folder: Path) -> Path | None:
    """A solution file named after the task: ``19_ReLU.py``, ``level1_19_ReLU.py`` or the id
    with ``/`` as ``_`` (``kernelbench_1_19_ReLU.py``)."""
    names = [f"{task.name}.py", task.id.replace("/", "_") + ".py"]
    if task.level is not None:
        names.insert(1, f"level{task.level}_{task.name}.py")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _task_config(config: Config, task: Task) -> Config:
    """Size overrides apply to the tasks that define those constants."""
    if not config.sizes or task.path is None:
        return config
    known = size_constants(task.path.read_text())
    return config.model_copy(update={"sizes": {k: v for k, v in config.sizes.items() if k in known}})


@dataclass
class BatchOutcome:
    results: list[EvalResult] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # task id -> why it did not run


def run_batch(evaluator: Evaluator, tasks: list[Task], solutions: str, out_path: Path,
              on_task: Callable[[Task, EvalResult | str], None]) -> BatchOutcome:
    """Evaluate each task; append each result to ``out_path`` (JSON lines) as it comes, so
    an interrupted batch keeps what it measured."""
    if not tasks:
        raise KbtoolError("no tasks selected (check source, level, task_start, task_end)")
    folder = None if solutions == "baseline" else Path(solutions)
    if folder is not None and not folder.is_dir():
        raise KbtoolError(f"--solutions must be 'baseline' or a folder; {solutions} is neither")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    outcome = BatchOutcome()
    with open(out_path, "a") as out:
        for task in tasks:
            try:
                result = _one(evaluator, task, folder, _task_config(evaluator.config, task))
            except KbtoolError as exc:
                outcome.skipped[task.id] = str(exc)
                on_task(task, str(exc))
                continue
            out.write(result.model_dump_json() + "\n")
            out.flush()
            outcome.results.append(result)
            on_task(task, result)
    return outcome


def _one(evaluator: Evaluator, task: Task, folder: Path | None, config: Config) -> EvalResult:
    if folder is None:
        return evaluator.baseline_result(task, config.mode, config)
    solution = solution_for(task, folder)
    if solution is None:
        raise KbtoolError(f"no solution file for {task.id} in {folder}")
    return evaluator.evaluate(task, solution, config)
