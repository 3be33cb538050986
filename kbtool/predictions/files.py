"""Predictions read from a file or from KernelBench's folders, each resolved to its task.

- A **predictions file** (SWE-bench's and GSO's format): JSON lines, or one JSON list, of
  objects with ``instance_id`` (a kbtool task id, or a prefix that names one task, as
  ``kbtool eval`` takes it), ``model_name_or_path`` and ``model_patch``.  Several lines may
  name one instance and model: its samples, in the file's order (pass@k, Opt@K).
- **KernelBench's generated kernels**: ``<run_name>/level_<L>_problem_<P>_sample_<S>_kernel.py``
  as KernelBench's ``generate_samples.py`` writes them under ``runs/``; the folder given is
  one run (it holds such files) or a folder of runs.  The model is the run's name; problem
  ``P`` of level ``L`` is the task of ``source`` (``builtin`` by default) with that level and
  number; samples in the order of ``S``.

Everything is read and resolved before anything is judged: a line that is not JSON, a
missing field or an unknown instance is one line naming the place, and nothing runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kbtool.config import Config
from kbtool.errors import KbtoolError, UsageError
from kbtool.predictions.model import Prediction
from kbtool.task import catalog
from kbtool.task.model import Task

KERNEL_FILE = re.compile(r"^level_(\d+)_problem_(\d+)_sample_(\d+)_kernel\.py$")


@dataclass(frozen=True)
class Entry:
    """One prediction, resolved."""

    instance_id: str
    task: Task
    model: str
    patch: str
    where: str          # "preds.jsonl line 3", or the kernel file
    order: int          # its place among the model's predictions for the task


def read_predictions(path: Path, config: Config) -> list[Entry]:
    """The predictions of a file or a KernelBench folder."""
    if path.is_dir():
        entries = kernel_folders(path, config)
    elif path.is_file():
        entries = predictions_file(path, config)
    else:
        raise UsageError(f"predictions not found: {path} (a .jsonl/.json file, or a folder "
                         "of KernelBench kernels)")
    if not entries:
        raise UsageError(f"{path} holds no predictions")
    return entries


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None


def _rows(path: Path) -> list[tuple[str, Any]]:
    """(where, value) of each prediction: the lines of a JSON-lines file, or the items of a
    JSON list."""
    text = _text(path)
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{path} is not JSON ({exc})") from None
        if isinstance(data, list):
            return [(f"{path} item {index}", row) for index, row in enumerate(data, 1)]
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path} line {number}", json.loads(line)))
        except ValueError as exc:
            raise UsageError(f"{path} line {number} is not JSON ({exc})") from None
    return rows


def _problem(error: ValidationError) -> str:
    """A validation error of a prediction, in a few words."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return f"missing field {field!r}"
    return f"field {field!r}: {first['msg']}"


class _Resolver:
    """Instance ids to tasks, each looked up once."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.found: dict[str, Task] = {}

    def __call__(self, instance_id: str, where: str) -> Task:
        if instance_id not in self.found:
            try:
                self.found[instance_id] = catalog.resolve(instance_id, self.config)
            except KbtoolError as exc:
                raise type(exc)(f"{where}: instance_id {instance_id!r}: {exc}") from None
        return self.found[instance_id]


def predictions_file(path: Path, config: Config) -> list[Entry]:
    resolve = _Resolver(config)
    entries = []
    for order, (where, row) in enumerate(_rows(path)):
        if not isinstance(row, dict):
            raise UsageError(f"{where} is not a JSON object (a prediction has instance_id, "
                             "model_name_or_path and model_patch)")
        try:
            prediction = Prediction.model_validate(row)
        except ValidationError as exc:
            raise UsageError(f"{where}: {_problem(exc)}") from None
        entries.append(Entry(prediction.instance_id,
                             resolve(prediction.instance_id, where),
                             prediction.model_name_or_path, prediction.model_patch or "",
                             where, order))
    return entries


def kernel_files(folder: Path) -> list[tuple[Path, int, int, int]]:
    """(file, level, problem, sample) of the generated kernels directly in ``folder``."""
    found = []
    for path in sorted(folder.iterdir()):
        match = KERNEL_FILE.match(path.name)
        if match and path.is_file():
            level, problem, sample = (int(g) for g in match.groups())
            found.append((path, level, problem, sample))
    return found


def kernel_folders(folder: Path, config: Config) -> list[Entry]:
    runs = [folder] if kernel_files(folder) else sorted(
        d for d in folder.iterdir() if d.is_dir() and kernel_files(d))
    if not runs:
        raise UsageError(f"{folder} holds no KernelBench kernels (level_<L>_problem_<P>_"
                         "sample_<S>_kernel.py), neither in it nor in its folders")
    by_number: dict[tuple[int, int], list[Task]] = {}
    for task in catalog.source_tasks(config.source, config):
        if task.level is not None and task.number is not None:
            by_number.setdefault((task.level, task.number), []).append(task)
    entries = []
    for run in runs:
        for path, level, problem, sample in kernel_files(run):
            tasks = by_number.get((level, problem), [])
            if len(tasks) != 1:
                what = "no task" if not tasks else \
                    f"{len(tasks)} tasks ({', '.join(t.id for t in tasks[:3])})"
                raise UsageError(f"{path}: {what} of source {config.source} with level {level} "
                                 f"and number {problem} (see: kbtool tasks list "
                                 f"source={config.source} level={level})")
            entries.append(Entry(tasks[0].id, tasks[0], run.name, _text(path), str(path),
                                 sample))
    return entries
