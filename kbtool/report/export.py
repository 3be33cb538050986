"""``kbtool report --export DIR``'s data set: every evaluation of the runs, one row each,
with its provenance, as ``DIR/results.parquet`` (``datasets.load_dataset("parquet",
data_files=...)`` or ``load_dataset(DIR)`` read it back).

The rows are :class:`ResultRow` (one schema: the data set's features are made from it);
the kind's result fields are one JSON text column (``details``), as kinds differ in them.
Written with the ``datasets`` library (the ``hf`` extra); without it the best solutions are
still exported and a line says how to get the data set too.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field

from kbtool.evaluation.result import EvalResult
from kbtool.report.build import RunData, _candidates, kind_of_tasks
from kbtool.runs.layout import RunLayout, parse_step_path
from kbtool.runs.provenance import EvalRecord

RESULTS = "results.parquet"


class ResultRow(EvalRecord):
    """One evaluated candidate of a run, as a row of the exported data set."""

    details: str = Field("{}", description="the kind's result fields, as JSON text")
    run: str = Field(description="the run directory, as given to kbtool report")
    agent: int | None = None
    step: int | None = Field(None, description="the try within its chain (0: the first)")
    best: bool = Field(description="this candidate is its task's best solution in the run")
    mode: str | None = Field(None, description="the baseline its speedup is against")
    model: str | None = Field(None, description="the run's model_name")
    strategy: str | None = None
    error: str | None = None
    code: str | None = Field(None, description="the candidate's text")


@dataclass
class Written:
    path: Path | None
    rows: int


def _feature(datasets: Any, annotation: Any) -> Any:
    """A ``datasets`` feature for a field's type (optional or not)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = args[0]
    if typing.get_origin(annotation) is list:
        sequence = getattr(datasets, "List", None) or datasets.Sequence
        return sequence(datasets.Value("string"))
    kinds = {bool: "bool", int: "int64", float: "float64", str: "string"}
    return datasets.Value(kinds[annotation])


def features(datasets: Any) -> Any:
    hints = typing.get_type_hints(ResultRow)
    return datasets.Features({name: _feature(datasets, hints[name])
                              for name in ResultRow.model_fields})


def _task_hashes(run_dir: Path) -> dict[str, str]:
    try:
        listed = json.loads(RunLayout(run_dir).tasks.read_text())
    except (OSError, ValueError):
        return {}
    return {str(item["id"]): str(item["hash"]) for item in listed if isinstance(item, dict)
            and item.get("id") and item.get("hash")} if isinstance(listed, list) else {}


def kind_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The kind's fields of an evaluation: an event's ``details``, else what a stored
    ``EvalResult`` has beyond the core's fields."""
    if isinstance(data.get("details"), dict):
        return dict(data["details"])
    return {k: v for k, v in data.items() if k not in EvalResult.model_fields}


def result_rows(label: str, run: RunData) -> list[ResultRow]:
    """Every evaluated candidate of one run, in the order of its tasks, phases, chains."""
    kinds = kind_of_tasks(run)
    hashes = _task_hashes(run.dir)
    best = {t.best_solution for t in run.tasks.values() if t.correct and t.best_solution}
    rows = []
    for rel, data in _candidates(run.dir, run.events, run.only).items():
        try:
            text: str | None = (run.dir / rel).read_text()
        except (OSError, UnicodeDecodeError):
            text = None
        task = str(data.get("task") or "?")
        parsed = parse_step_path(rel)
        rows.append(ResultRow.from_eval(
            data, rel, text, hashes.get(task), kinds.get(task) or data.get("kind"),
            details=json.dumps(kind_fields(data), sort_keys=True, default=str), run=label,
            agent=parsed[2] if parsed else None, step=parsed[3] if parsed else None,
            best=rel in best, mode=data.get("mode"), model=run.model, strategy=run.strategy,
            error=data.get("error"), code=text))
    order = {task_id: i for i, task_id in enumerate(run.tasks)}
    rows.sort(key=lambda r: (order.get(r.task, len(order)), r.task, r.phase or 0, r.agent or 0,
                             r.step or 0))
    return rows


def write_dataset(runs: dict[str, RunData], directory: Path) -> Written:
    """``DIR/results.parquet``: the rows of every run (a ``run`` column tells them apart)."""
    try:
        import datasets
    except ImportError:
        print("kbtool report: the results data set needs the datasets library "
              "(pip install 'kbtool[hf]'); only the best solutions were exported",
              file=sys.stderr)
        return Written(None, 0)
    datasets.disable_progress_bars()
    rows = [row.model_dump() for label, run in runs.items() for row in result_rows(label, run)]
    table = datasets.Dataset.from_list(rows, features=features(datasets))
    path = directory / RESULTS
    table.to_parquet(str(path))
    return Written(path, len(rows))
