"""What a task kind adds to ``kbtool report``: its own metrics, tables and figures.

The core report (fast_p, speedups, phases, statuses, cost) is the same for every kind.  A
kind whose tasks need more (pass rates by turn for repository tasks, Opt@K for performance
commits) implements ``TaskKind.report(view)`` and returns a :class:`KindReport`; the report
prints its tables after the core ones, puts its ``data`` under ``kinds.<kind>`` in the
``--json`` output, writes each table as ``<kind>_<table>.csv`` and calls ``plot`` for
``--plots``.  The kind reads the run through :class:`RunView`, never the files directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from kbtool.runs.layout import RunLayout, parse_step_path, safe_name


@dataclass
class Table:
    name: str                      # file-name part: ``<kind>_<name>.csv``
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class KindReport:
    kind: str
    data: dict[str, Any]                                    # JSON-ready
    tables: list[Table] = field(default_factory=list)
    plot: Callable[[Path], list[Path]] | None = None        # writes figures into a folder


@dataclass(frozen=True)
class CandidateRecord:
    """One evaluated candidate of a run, in the order of the search tree."""

    task: str
    phase: int
    agent: int
    step: int
    path: str                   # relative to the run directory
    result: dict[str, Any]      # the EvalResult, with the kind's details


class RunView:
    """Read-only access to one run for a kind's report.  ``only``: the candidates (paths
    relative to the run) the view shows, when it shows part of a run (one model's of a
    predictions run); None: all."""

    def __init__(self, run_dir: Path, task_ids: list[str], kinds: dict[str, str],
                 summaries: dict[str, Any], only: frozenset[str] | None = None) -> None:
        self.dir = run_dir
        self.layout = RunLayout(run_dir)
        self.task_ids = task_ids
        self.kinds = kinds              # task id -> kind name
        self.summaries = summaries      # task id -> its TaskSummary (the core's rule)
        self.only = only

    def tasks_of(self, kind: str) -> list[str]:
        return [t for t in self.task_ids if self.kinds.get(t) == kind]

    @cached_property
    def _candidates(self) -> dict[str, list[CandidateRecord]]:
        by_safe = {safe_name(t): t for t in self.task_ids}
        found: dict[str, list[CandidateRecord]] = {}
        for file in sorted(self.dir.glob("tasks/*/phase*/agent*/step*/eval.json")):
            try:
                result = json.loads(file.read_text())
            except (OSError, ValueError):
                continue
            candidate = next(iter(sorted(file.parent.glob("candidate*"))), None)
            rel = self.layout.relative(candidate) if candidate is not None else ""
            parsed = parse_step_path(rel)
            if parsed is None or not isinstance(result, dict):
                continue
            safe, phase, agent, step = parsed
            task = str(result.get("task") or by_safe.get(safe, safe))
            found.setdefault(task, []).append(
                CandidateRecord(task, phase, agent, step, rel, result))
        for records in found.values():
            records.sort(key=lambda c: (c.phase, c.agent, c.step))
        return found

    def candidates(self, task_id: str) -> list[CandidateRecord]:
        """The task's evaluated candidates the view shows, by phase, agent and step."""
        return [c for c in self._candidates.get(task_id, [])
                if self.only is None or c.path in self.only]

    def all_candidates(self, task_id: str) -> list[CandidateRecord]:
        """Every evaluated candidate of the task in the run, whatever part the view shows:
        what belongs to the task rather than to a candidate (whether a perf task is
        calibrated on this machine) is judged from all of them."""
        return list(self._candidates.get(task_id, []))

    @cached_property
    def _listed(self) -> dict[str, dict[str, Any]]:
        try:
            listed = json.loads(self.layout.tasks.read_text())
        except (OSError, ValueError):
            return {}
        return {item["id"]: item for item in listed if isinstance(item, dict) and "id" in item}

    def labels(self, task_id: str) -> dict[str, str]:
        """The small facts the task's kind recorded about it (``TaskKind.labels``)."""
        return dict(self._listed.get(task_id, {}).get("labels") or {})
