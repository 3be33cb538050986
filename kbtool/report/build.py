"""``kbtool report``: what a run (or several, side by side) achieved.

KernelBench's metrics from a run directory: fast_p against each baseline, geometric-mean
speedups, the improvement phase by phase, the correctness and error breakdown and the cost;
printed as tables (rich on a terminal, plain text otherwise), as one JSON object, as CSV
files, as figures (:mod:`kbtool.report.plots`), and the best solution of each task exported.

The numbers come from ``summary.json``.  A run that crashed before writing it is
reconstructed from the step ``eval.json`` files, the ``eval``/``baseline``/``llm_call``
events and ``evals/``, by the one summary rule (:mod:`kbtool.runs.summary`).  The baselines
reported are those the run timed (its ``summary.json`` or ``run_started`` event say which);
runs written before they said so are KernelBench runs (eager and compile).
See docs/report.md for the definitions.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kbtool.errors import UsageError
from kbtool.evaluation.result import Status
from kbtool.report.sections import KindReport, RunView, Table
from kbtool.runs.layout import RunLayout, parse_step_path, safe_name
from kbtool.runs.store import read_events
from kbtool.runs.summary import (
    Attempt,
    RunSummary,
    TaskSummary,
    against_each,
    faster,
    finite,
    interval,
    summarize_task,
)

log = logging.getLogger(__name__)

P_VALUES = (0.0, 0.5, 0.8, 1.0, 1.5, 2.0)
P_KEYS = ("0", "0.5", "0.8", "1.0", "1.5", "2.0")   # the JSON keys of fast_p, in order
# Runs written before runs named their baselines are KernelBench runs: both are reported.
LEGACY_BASELINES = ("eager", "compile")
STATUSES = tuple(s.value for s in Status)
CORRECT_ONLY = "correct_tasks"
CLAMPED = "all_tasks_clamped"


class TaskInfo(TaskSummary):
    """One task of a run, as its summary describes it."""

    id: str


@dataclass
class RunData:
    dir: Path
    source: str                               # "summary.json" or "reconstructed"
    status: str | None
    model: str | None
    strategy: str | None
    tasks: dict[str, TaskInfo]
    totals: dict[str, Any]
    events: list[dict[str, Any]]
    baselines: list[str] = field(default_factory=list)  # the baselines the run reports
    # Part of a run (one model's candidates of a predictions run): the candidates it holds,
    # relative to the run directory; None: all of them.
    only: frozenset[str] | None = None
    # Sections whoever loaded the run made for it (a predictions run's pass@k), printed
    # first; their data goes under the section's name in the JSON.
    sections: list[KindReport] = field(default_factory=list)


# -- loading -------------------------------------------------------------------------------------

_number = finite


def _read_config(layout: RunLayout) -> dict[str, Any]:
    try:
        config = yaml.safe_load(layout.config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _baselines(summary: dict[str, Any] | None, events: list[dict[str, Any]],
               config: dict[str, Any], tasks: dict[str, TaskInfo]) -> list[str]:
    """The baselines a run reports: what it said it timed, else (older runs) KernelBench's."""
    named: list[str] | None = None
    if isinstance(summary, dict) and isinstance(summary.get("baselines"), list):
        named = [str(b) for b in summary["baselines"]]
    started = [e for e in events if e.get("type") == "run_started"
               and isinstance(e.get("baselines"), list)]
    if named is None and started:
        named = [str(b) for b in started[-1]["baselines"]]
    if named is None:
        named = list(LEGACY_BASELINES)
    seen = {mode for t in tasks.values() for mode in t.baselines_ms}
    return [*named, *sorted(seen - set(named))]


def load_run(path: Path) -> RunData:
    """A run directory's tasks, from summary.json or, without one, reconstructed."""
    if not path.exists():
        raise UsageError(f"{path}: no such run directory")
    if not path.is_dir():
        raise UsageError(f"{path} is not a directory (kbtool report takes run directories)")
    layout = RunLayout(path)
    if not layout.is_run():
        if layout.plan.is_file():
            raise UsageError(f"{path} is a dry run (plan.json only): nothing was run to report")
        raise UsageError(f"{path} is not a kbtool run directory (none of summary.json, "
                         f"events.jsonl, config.yaml, tasks.json)")
    events = read_events(path)
    summary = None
    if layout.summary.is_file():
        try:
            summary = json.loads(layout.summary.read_text())
        except (ValueError, OSError) as exc:
            log.warning("%s is unreadable (%s); reconstructing the run from its evaluations "
                        "and events", layout.summary, exc)
    config = _read_config(layout)
    run = None
    if isinstance(summary, dict) and isinstance(summary.get("tasks"), dict):
        run = _from_summary(path, summary, events)
    if run is None:
        run = _reconstruct(path, events, config)
    if not run.tasks:
        raise UsageError(f"{path}: the run has no tasks")
    run.baselines = _baselines(summary, events, config, run.tasks)
    return run


def _from_summary(path: Path, summary: dict[str, Any], events: list[dict[str, Any]]) -> RunData | None:
    try:
        parsed = RunSummary.model_validate({**summary, "status": summary.get("status") or "?"})
    except ValidationError as exc:
        log.warning("%s does not match the summary schema (%s); reconstructing the run",
                    RunLayout(path).summary, str(exc).splitlines()[0])
        return None
    tasks = {task_id: TaskInfo(id=task_id, **info.model_dump())
             for task_id, info in parsed.tasks.items()}
    totals = parsed.totals or _totals_from_events(path, events)
    return RunData(path, "summary.json", parsed.status, parsed.model, parsed.strategy, tasks,
                   dict(totals), events)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def _candidates(path: Path, events: list[dict[str, Any]],
                only: frozenset[str] | None = None) -> dict[str, dict[str, Any]]:
    """Every evaluated candidate, by its path relative to the run directory: the step's
    ``eval.json``, else its ``eval`` event, else the ``evals/`` entry naming it.  ``only``:
    those of these paths (None: all)."""
    if only is not None:
        return {rel: data for rel, data in _candidates(path, events).items() if rel in only}
    found: dict[str, dict[str, Any]] = {}
    for file in sorted(path.glob("tasks/*/phase*/agent*/step*/eval.json")):
        data = _load_json(file)
        candidate = next(iter(sorted(file.parent.glob("candidate*"))), None)
        if data is not None and candidate is not None:
            found[candidate.relative_to(path).as_posix()] = data
    for event in events:
        if event.get("type") == "eval" and isinstance(event.get("path"), str):
            found.setdefault(event["path"], {k: event.get(k) for k in (
                "task", "status", "runtime_ms", "baseline_ms", "speedup", "speedup_ci",
                "speedup_from", "speedups", "flags")})
    for file in sorted(RunLayout(path).evals.glob("*.json")):
        data = _load_json(file)
        solution = str(data.get("solution") or "") if data else ""
        start = solution.replace("\\", "/").rfind("tasks/")
        rel = solution.replace("\\", "/")[start:] if start >= 0 else ""
        if data is not None and parse_step_path(rel) and rel not in found and (path / rel).is_file():
            found[rel] = data
    return found


def _totals_from_events(path: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [e for e in events if e.get("type") == "llm_call"]
    cached = sum(1 for e in calls if e.get("cached"))
    return {"calls": len(calls), "paid_calls": len(calls) - cached, "cached_calls": cached,
            "prompt_tokens": sum(int(e.get("prompt_tokens") or 0) for e in calls),
            "completion_tokens": sum(int(e.get("completion_tokens") or 0) for e in calls),
            "cost_usd": round(sum(float(e.get("cost_usd") or 0.0) for e in calls), 6),
            "llm_errors": sum(1 for e in events if e.get("type") == "llm_error"),
            "evaluations": len(list(RunLayout(path).evals.glob("*.json")))}


def _reconstruct(path: Path, events: list[dict[str, Any]], config: dict[str, Any],
                 only: frozenset[str] | None = None) -> RunData:
    """summary.json rebuilt by the same rule the search uses (``kbtool.runs.summary``), from
    the candidates ``only`` names (None: all)."""
    layout = RunLayout(path)
    ids: list[str] = []
    listed = _load_json_list(layout.tasks)
    ids = [item["id"] for item in listed if isinstance(item, dict) and "id" in item]
    started = [e for e in events if e.get("type") == "run_started"]
    for event in started:
        ids += [t for t in event.get("tasks") or [] if t not in ids]
    by_safe = {safe_name(t): t for t in ids}

    found: dict[str, list[tuple[tuple[Any, ...], str, dict[str, Any]]]] = {}
    seq = {e["path"]: e.get("seq", 0) for e in events
           if e.get("type") == "eval" and isinstance(e.get("path"), str)}
    for rel, data in _candidates(path, events, only).items():
        parsed = parse_step_path(rel)
        assert parsed is not None
        safe, phase, agent, step = parsed
        task_id = data.get("task") or by_safe.get(safe, safe)
        if task_id not in ids:
            ids.append(task_id)
        found.setdefault(task_id, []).append(
            ((seq.get(rel, math.inf), phase, agent, step), rel, data))
    baselines: dict[str, dict[str, float]] = {}
    for event in events:
        if event.get("type") == "baseline" and _number(event.get("ms")) is not None:
            baselines.setdefault(event.get("task", ""), {})[event.get("mode", "?")] = event["ms"]
            if event.get("task") not in ids:
                ids.append(event.get("task", ""))
    tasks = {}
    for task_id in ids:
        ordered = sorted(found.get(task_id, []), key=lambda c: c[0])
        attempts = [Attempt(phase=order[1], status=str(data.get("status") or "?"),
                            runtime_ms=_number(data.get("runtime_ms")),
                            speedup=_number(data.get("speedup")),
                            speedup_ci=interval(data.get("speedup_ci")),
                            baseline_ms=_number(data.get("baseline_ms")),
                            flags=tuple(data.get("flags") or ()), solution=rel,
                            speedup_from=_text_or_none(data.get("speedup_from")),
                            speedups=against_each(data.get("speedups")))
                    for order, rel, data in ordered]
        mode = next((d.get("mode") for _, _, d in ordered if d.get("mode")), None) or \
            config.get("mode") or (LEGACY_BASELINES[0] if baselines.get(task_id) else None)
        summary = summarize_task(attempts, dict(baselines.get(task_id, {})), mode)
        tasks[task_id] = TaskInfo(id=task_id, **summary.model_dump())

    finished = [e for e in events if e.get("type") == "run_finished"]
    status = "incomplete"
    if finished and (not started or finished[-1].get("seq", 0) > started[-1].get("seq", 0)):
        status = finished[-1].get("status") or status
    last = started[-1] if started else {}
    return RunData(path, "reconstructed", status, last.get("model") or config.get("model_name"),
                   last.get("strategy") or config.get("strategy"), tasks,
                   _totals_from_events(path, events), events)


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _load_json_list(path: Path) -> list[Any]:
    try:
        data = json.loads(path.read_text())
    except (ValueError, OSError):
        return []
    return data if isinstance(data, list) else []


# -- metrics -------------------------------------------------------------------------------------

def geomean(values: list[float]) -> float | None:
    """The geometric mean of positive numbers (None for none)."""
    values = [v for v in values if v is not None and v > 0]
    if not values:
        return None
    return math.exp(sum(math.log(v) for v in values) / len(values))


Speedup = tuple[float | None, Any]  # a speedup (None: incorrect) and its interval, if any


def fast_p(speedups: list[float | None], n_tasks: int,
           intervals: list[Any] | None = None) -> dict[str, float]:
    """KernelBench's fast_p: the fraction of ALL tasks whose best solution is correct and
    more than p times faster than the baseline (``speedups``: None for an incorrect task).
    For p >= 1 a speedup whose interval (``intervals``, where known) contains 1 does not
    count: it is not shown faster (``kbtool.runs.summary.faster``)."""
    cis = intervals if intervals is not None else [None] * len(speedups)
    return {key: sum(1 for s, ci in zip(speedups, cis, strict=True) if s is not None and (
                faster(s, ci, p) if p >= 1 else s > p)) / n_tasks
            for key, p in zip(P_KEYS, P_VALUES, strict=True)}


def _geomeans(speedups: list[Speedup]) -> tuple[float | None, float | None]:
    """(over correct tasks, over all tasks with speedup clamped to >= 1, incorrect = 1)."""
    correct = [s for s, _ in speedups if s is not None]
    clamped = [max(s, 1.0) if s is not None else 1.0 for s, _ in speedups]
    return geomean(correct), geomean(clamped)


def _metrics(speedups: dict[str, list[Speedup]], measured: dict[str, bool],
             n: int) -> tuple[dict[str, Any], dict[str, Any]]:
    fast: dict[str, Any] = {}
    means: dict[str, Any] = {CORRECT_ONLY: {}, CLAMPED: {}}
    for mode, values in speedups.items():
        if measured[mode]:
            fast[mode] = fast_p([v for v, _ in values], n, [ci for _, ci in values])
            means[CORRECT_ONLY][mode], means[CLAMPED][mode] = _geomeans(values)
        else:
            fast[mode] = dict.fromkeys(P_KEYS)
            means[CORRECT_ONLY][mode] = means[CLAMPED][mode] = None
    return fast, means


def build_report(run: RunData) -> dict[str, Any]:
    """The report of one run as a JSON-ready object (the ``--json`` output)."""
    tasks = list(run.tasks.values())
    n = len(tasks)
    seen = {mode for t in tasks for mode in t.baselines_ms}
    modes = run.baselines
    measured = {mode: mode in seen for mode in modes}
    final = {mode: [(t.speedup.get(mode), t.speedup_ci.get(mode)) if t.correct else (None, None)
                    for t in tasks] for mode in modes}
    fast, means = _metrics(final, measured, n)
    means["n_correct"] = sum(t.correct for t in tasks)
    means["n_tasks"] = n

    phases: list[dict[str, Any]] = []
    so_far: dict[str, float | None] = {t.id: None for t in tasks}
    best_phase: dict[str, dict[str, Any]] = {t.id: {} for t in tasks}
    for phase in range(max((len(t.phases) for t in tasks), default=0)):
        per_task = {}
        speedups: dict[str, list[Speedup]] = {mode: [] for mode in modes}
        for t in tasks:
            entry = t.phases[phase].model_dump() if phase < len(t.phases) else {}
            own = _number(entry.get("best_runtime_ms"))
            previous = so_far[t.id]
            if own is not None and (previous is None or own < previous):
                so_far[t.id], best_phase[t.id] = own, entry
            best = so_far[t.id]
            speedup: dict[str, float | None] = {}
            ci: dict[str, Any] = {}
            source: dict[str, str | None] = {}
            for mode in modes:
                if best is None:
                    speedup[mode] = ci[mode] = source[mode] = None
                elif best == t.best_runtime_ms and t.speedup.get(mode) is not None:
                    # the summary's own speedup (its evaluation's, paired or cached)
                    speedup[mode], ci[mode] = t.speedup[mode], t.speedup_ci.get(mode)
                    source[mode] = t.speedup_from.get(mode)
                elif (best_phase[t.id].get("speedup") or {}).get(mode) is not None:
                    speedup[mode] = best_phase[t.id]["speedup"][mode]
                    ci[mode] = (best_phase[t.id].get("speedup_ci") or {}).get(mode)
                    source[mode] = (best_phase[t.id].get("speedup_from") or {}).get(mode)
                else:  # runs from before phases kept their speedups: a baseline timed apart
                    ms = t.baselines_ms.get(mode)
                    speedup[mode], ci[mode] = (ms / best if ms else None), None
                    source[mode] = "cached" if ms else None
                speedups[mode].append((speedup[mode], ci[mode]))
            per_task[t.id] = {"best_runtime_ms": own, "best_so_far_ms": best,
                              "correct_candidates": int(entry.get("correct") or 0),
                              "speedup": speedup, "speedup_ci": ci, "speedup_from": source}
        phase_fast, phase_means = _metrics(speedups, measured, n)
        phases.append({"phase": phase,
                       "correct_tasks": sum(1 for t in tasks if so_far[t.id] is not None),
                       "geomean_speedup": phase_means, "fast_p": phase_fast, "tasks": per_task})

    candidates = {s: 0 for s in STATUSES}
    flags: dict[str, int] = {}
    for t in tasks:
        for status, count in t.statuses.items():
            candidates[status] = candidates.get(status, 0) + count
        for flag in t.flags:
            flags[flag] = flags.get(flag, 0) + 1
    total = sum(candidates.values())
    # kbtool's own failures judged nothing: no candidate passed or failed there.
    judged = total - candidates.get(Status.internal_error.value, 0)
    statuses = {
        "candidates": candidates, "total_candidates": total,
        "candidate_correct_rate": candidates.get("ok", 0) / judged if judged else None,
        "tasks_with_internal_errors": [t.id for t in tasks
                                       if t.statuses.get(Status.internal_error.value)],
        "tasks_total": n, "tasks_correct": sum(t.correct for t in tasks),
        "tasks_without_correct": [t.id for t in tasks if not t.correct],
        "best_solution_flags": dict(sorted(flags.items())),
        "tasks_skipped": {e.get("task"): e.get("reason") for e in run.events
                          if e.get("type") == "task_skipped"},
        "tasks_failed": {e.get("task"): e.get("error") for e in run.events
                         if e.get("type") == "task_failed"},
        "format_errors": sum(1 for e in run.events if e.get("type") == "format_error"),
        "llm_failed": sum(1 for e in run.events if e.get("type") == "llm_failed"),
    }
    cost = dict(run.totals)
    cost["total_tokens"] = int(cost.get("prompt_tokens") or 0) + \
        int(cost.get("completion_tokens") or 0)

    return _finite({
        "run_dir": str(run.dir), "source": run.source, "status": run.status,
        "model": run.model, "strategy": run.strategy, "n_tasks": n, "baselines": modes,
        "p_values": list(P_KEYS),
        "fast_p": fast, "geomean_speedup": means,
        "speedup_from": {m: _sources([t.speedup_from.get(m) for t in tasks
                                      if t.correct and t.speedup.get(m) is not None])
                         for m in modes},
        "phases": phases, "statuses": statuses,
        "cost": cost,
        "tasks": {t.id: {"correct": t.correct, "best_runtime_ms": t.best_runtime_ms,
                         "best_solution": t.best_solution, "baselines_ms": t.baselines_ms,
                         "speedup": {m: t.speedup.get(m) if t.correct else None for m in modes},
                         "speedup_ci": {m: t.speedup_ci.get(m) if t.correct else None
                                        for m in modes},
                         "speedup_from": {m: t.speedup_from.get(m) if t.correct else None
                                          for m in modes},
                         "flags": t.flags, "statuses": t.statuses, "candidates": t.candidates,
                         "correct_candidates": t.correct_candidates,
                         "best_so_far_ms_by_phase": [p["tasks"][t.id]["best_so_far_ms"]
                                                     for p in phases]}
                  for t in tasks},
    })


def _sources(found: list[str | None]) -> dict[str, int]:
    """How many speedups were timed which way (``paired``, ``cached``, ``unknown``)."""
    counts: dict[str, int] = {}
    for source in found:
        counts[source or "unknown"] = counts.get(source or "unknown", 0) + 1
    return counts


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def kind_of_tasks(run: RunData) -> dict[str, str]:
    """Each task's kind, as the run recorded it (runs before kinds were named: KernelBench)."""
    kinds: dict[str, str] = {}
    for event in run.events:
        if event.get("type") == "run_started" and isinstance(event.get("kinds"), dict):
            kinds.update({str(k): str(v) for k, v in event["kinds"].items()})
    try:
        listed = json.loads(RunLayout(run.dir).tasks.read_text())
    except (OSError, ValueError):
        listed = []
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, dict) and item.get("kind") and item.get("id"):
            kinds.setdefault(str(item["id"]), str(item["kind"]))
    return {task_id: kinds.get(task_id, "kernelbench") for task_id in run.tasks}


def kind_reports(run: RunData) -> list[KindReport]:
    """What each task kind of the run adds to the report (``TaskKind.report``)."""
    from kbtool.plugin import registry

    kinds = kind_of_tasks(run)
    view = RunView(run.dir, list(run.tasks), kinds, dict(run.tasks), run.only)
    found = []
    installed = registry.TASK_KINDS.all()
    for name in dict.fromkeys(kinds.values()):
        if name not in installed:
            log.warning("%s: tasks of kind %r, which no installed plugin knows; only the "
                        "common metrics are reported", run.dir, name)
            continue
        section = installed[name].report(view)
        if section is not None:
            found.append(section)
    return found


def combined_json(reports: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One run: its report.  Several: ``{"runs": {label: report}}``, with the first run's
    ``fast_p`` repeated at the top level so that ``fast_p`` is always there."""
    if len(reports) == 1:
        return next(iter(reports.values()))
    first = next(iter(reports.values()))
    return {"fast_p": first["fast_p"], "first_run": next(iter(reports)), "runs": reports}


# -- terminal output -----------------------------------------------------------------------------

def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}x"


def _x_ci(value: float | None, ci: Any, source: str | None = None) -> str:
    """``1.931x [1.88-1.99]``: a speedup with its 95% interval (the report's table), and
    ``cached`` after one against a baseline timed apart."""
    bounds = interval(ci)
    text = _x(value)
    if value is not None and bounds is not None:
        text += f" [{bounds[0]:.2f}-{bounds[1]:.2f}]"
    return f"{text} cached" if value is not None and source == "cached" else text


def _frac(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


class _Printer:
    """Tables as rich tables on a terminal, plain aligned columns otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stdout.isatty()
        if self.tty:
            from rich.console import Console

            self.console = Console()

    def heading(self, text: str) -> None:
        if self.tty:
            from rich.markup import escape

            self.console.rule(f"[bold]{escape(text)}")
        else:
            print(f"== {text} ==")

    def line(self, text: str) -> None:
        if self.tty:
            self.console.print(text, markup=False, highlight=False)
        else:
            print(text)

    def table(self, title: str, columns: list[str], rows: list[list[str]],
              left: tuple[int, ...] = (0,)) -> None:
        if self.tty:
            from rich.markup import escape
            from rich.table import Table

            table = Table(title=escape(title), title_justify="left")
            for i, column in enumerate(columns):
                table.add_column(escape(column), justify="left" if i in left else "right")
            for row in rows:
                table.add_row(*(escape(str(cell)) for cell in row))
            self.console.print(table)
            return
        print(title)
        widths = [max(len(str(row[i])) for row in [columns, *rows]) for i in range(len(columns))]
        for row in [columns, *rows]:
            print("  ".join(str(cell).ljust(w) if i in left else str(cell).rjust(w)
                            for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        print()


def measured_baselines(rep: dict[str, Any]) -> list[str]:
    """The baselines of a report that some task was timed against (fast_p, geometric means
    and speedups apply to them); none for kinds whose tasks are judged, not timed, or timed
    only inside their check."""
    return [m for m in rep["baselines"]
            if any(v is not None for v in (rep["fast_p"].get(m) or {}).values())]


def timed(rep: dict[str, Any]) -> bool:
    """Whether some task of a report has a runtime (its best solution was timed)."""
    return any(t["best_runtime_ms"] is not None for t in rep["tasks"].values()) or any(
        v is not None for t in rep["tasks"].values() for v in t["best_so_far_ms_by_phase"])


def _print_run(out: _Printer, label: str, rep: dict[str, Any]) -> None:
    n, means = rep["n_tasks"], rep["geomean_speedup"]
    # Only what applies to the run's tasks: no empty table, no column of dashes.
    modes = measured_baselines(rep)
    runtimes = timed(rep)
    out.heading(f"run {label}")
    out.line(f"source: {rep['source']}; status: {rep['status']}; model: {rep['model']}; "
             f"strategy: {rep['strategy']}; {means['n_correct']}/{n} tasks correct")
    out.line("")
    if modes:
        out.table(f"fast_p: fraction of all {n} tasks correct and more than p times faster "
                  f"than the baseline (for p >= 1, with the speedup's 95% interval above 1)",
                  ["baseline", *[f"p={k}" for k in P_KEYS]],
                  [[m, *[_frac(rep["fast_p"][m][k]) for k in P_KEYS]] for m in modes])
        out.table("geometric-mean speedup",
                  ["baseline", f"over correct tasks (n={means['n_correct']})",
                   f"over all tasks, clamped >= 1 (n={n})"],
                  [[m, _x(means[CORRECT_ONLY][m]), _x(means[CLAMPED][m])] for m in modes])
    else:
        out.line("fast_p and geometric-mean speedups: none (the run timed no baseline; a "
                 "kind's own measurements are in its section below)")
        out.line("")
    rows = []
    for task_id, t in rep["tasks"].items():
        rows.append([task_id, "yes" if t["correct"] else "no",
                     *([_ms(t["best_runtime_ms"])] if runtimes else []),
                     *[_ms(t["baselines_ms"].get(m)) for m in modes],
                     *[_x_ci(t["speedup"].get(m), t["speedup_ci"].get(m),
                             t["speedup_from"].get(m)) for m in modes],
                     f"{t['correct_candidates']}/{t['candidates']}"])
    out.table("per task (best solution)",
              ["task", "correct", *(["best ms"] if runtimes else []),
               *[f"{m} ms" for m in modes], *[f"vs {m}" for m in modes], "ok/candidates"],
              rows, left=(0, 1))
    cached = {m: rep["speedup_from"][m].get("cached", 0) for m in modes
              if rep["speedup_from"][m].get("cached")}
    if cached:
        out.line("cached: against a baseline timed apart, not in the candidate's rounds "
                 "(its interval holds that baseline's own); " +
                 ", ".join(f"{n} vs {m}" for m, n in cached.items()))
        out.line("")
    flagged = [[task_id, ", ".join(t["flags"])] for task_id, t in rep["tasks"].items() if t["flags"]]
    if flagged:
        out.table("integrity flags of the best solutions (see docs/integrity.md)",
                  ["task", "flags"], flagged, left=(0, 1))
    phases = rep["phases"]
    if phases and modes:
        out.table("per phase: best solution so far, across tasks",
                  ["phase", "baseline", "correct tasks", "geomean (correct tasks)",
                   "geomean (all, clamped >= 1)", "fast_1"],
                  [[str(p["phase"]), m, f"{p['correct_tasks']}/{n}",
                    _x(p["geomean_speedup"][CORRECT_ONLY][m]), _x(p["geomean_speedup"][CLAMPED][m]),
                    _frac(p["fast_p"][m]["1.0"])] for p in phases for m in modes], left=(0, 1))
    if phases and runtimes:
        out.table("per phase: best runtime so far (ms) per task",
                  ["task", *[f"phase {p['phase']}" for p in phases]],
                  [[task_id, *[_ms(v) for v in t["best_so_far_ms_by_phase"]]]
                   for task_id, t in rep["tasks"].items()])
    st = rep["statuses"]
    others = [s for s in st["candidates"] if s not in STATUSES]
    total = st["total_candidates"]
    evaluations = rep["cost"].get("evaluations")
    counted = f"{total} candidate{'' if total == 1 else 's'}"
    if isinstance(evaluations, int) and evaluations < total:  # the same code: one evaluation
        again = total - evaluations
        counted += (f", {evaluations} evaluations: {again} {'was' if again == 1 else 'were'} "
                    f"identical to an earlier candidate and reused its verdict")
    out.table(f"candidates by status ({counted})",
              ["", *STATUSES, *others],
              [["candidates", *[str(st["candidates"].get(s, 0)) for s in (*STATUSES, *others)]]])
    failed = st["candidates"].get(Status.internal_error.value, 0)
    extra = [f"kbtool failed while judging {failed} candidates (internal_error: no verdict, "
             "not counted as the model's)" if failed else "",
             f"{len(st['tasks_skipped'])} tasks skipped" if st["tasks_skipped"] else "",
             f"{len(st['tasks_failed'])} tasks failed" if st["tasks_failed"] else "",
             f"{st['format_errors']} replies without code" if st["format_errors"] else "",
             f"{st['llm_failed']} LLM calls failed for good" if st["llm_failed"] else ""]
    if any(extra):
        out.line("; ".join(e for e in extra if e))
    c = rep["cost"]
    cost = c.get("cost_usd")
    out.line(f"cost: {c.get('calls', 0)} LLM calls ({c.get('paid_calls', 0)} paid, "
             f"{c.get('cached_calls', 0)} reused), {c['total_tokens']} tokens "
             f"({c.get('prompt_tokens', 0)} prompt + {c.get('completion_tokens', 0)} completion), "
             f"{'$?' if cost is None else f'${cost:.4f}'}, {c.get('llm_errors', 0)} LLM errors, "
             f"{c.get('evaluations', 0)} evaluations")
    out.line("")


def _print_comparison(out: _Printer, reports: dict[str, dict[str, Any]]) -> None:
    out.heading(f"{len(reports)} runs side by side")
    measured = {label: measured_baselines(rep) for label, rep in reports.items()}
    if any(measured.values()):
        out.table("fast_p", ["run", "baseline", *[f"p={k}" for k in P_KEYS]],
                  [[label, m, *[_frac(rep["fast_p"][m][k]) for k in P_KEYS]]
                   for label, rep in reports.items() for m in measured[label]], left=(0, 1))
        out.table("geometric-mean speedup",
                  ["run", "baseline", "over correct tasks", "over all tasks, clamped >= 1"],
                  [[label, m, _x(rep["geomean_speedup"][CORRECT_ONLY][m]),
                    _x(rep["geomean_speedup"][CLAMPED][m])]
                   for label, rep in reports.items() for m in measured[label]], left=(0, 1))
    from kbtool.report.predictions import comparison

    for table in comparison(reports):
        out.table(table.title, table.columns, [[_text(c) for c in row] for row in table.rows],
                  left=(0,))
    out.table("correctness and cost", ["run", "tasks correct", "candidates ok", "calls",
                                       "tokens", "cost USD"],
              [[label, f"{rep['statuses']['tasks_correct']}/{rep['n_tasks']}",
                f"{rep['statuses']['candidates'].get('ok', 0)}/"
                f"{rep['statuses']['total_candidates']}",
                str(rep["cost"].get("calls", 0)), str(rep["cost"]["total_tokens"]),
                "?" if rep["cost"].get("cost_usd") is None else f"{rep['cost']['cost_usd']:.4f}"]
               for label, rep in reports.items()])


def print_reports(reports: dict[str, dict[str, Any]],
                  sections: dict[str, list[KindReport]] | None = None) -> None:
    out = _Printer()
    for label, rep in reports.items():
        _print_run(out, label, rep)
        for section in (sections or {}).get(label, []):
            for table in section.tables:
                out.table(f"{section.kind}: {table.title}", table.columns,
                          [[_text(cell) for cell in row] for row in table.rows])
    if len(reports) > 1:
        _print_comparison(out, reports)


# -- files ---------------------------------------------------------------------------------------

def _out_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise UsageError(f"{path} exists and is not a directory")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _cell(value: Any) -> Any:
    return "" if value is None else value


SPEEDUP_COLUMNS = ("", "_low", "_high", "_from")  # speedup_<mode><end> in the CSV files


def _speedup_cells(t: dict[str, Any], mode: str) -> list[Any]:
    """A speedup, its interval's bounds and how it was timed (paired, cached), as CSV
    cells (empty where there are none)."""
    bounds = interval(t["speedup_ci"].get(mode)) or (None, None)
    return [_cell(t["speedup"].get(mode)), _cell(bounds[0]), _cell(bounds[1]),
            _cell(t["speedup_from"].get(mode))]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_kind_csv(sections: dict[str, list[KindReport]], directory: Path) -> list[Path]:
    """Each kind's tables as ``<kind>_<table>.csv``, one block of rows per run."""
    directory = _out_dir(directory)
    tables: dict[str, list[tuple[str, Table]]] = {}
    for label, found in sections.items():
        for section in found:
            for table in section.tables:
                tables.setdefault(f"{section.kind}_{table.name}", []).append((label, table))
    written = []
    for name, entries in tables.items():
        path = directory / f"{_safe(name)}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["run", *entries[0][1].columns])
            for label, table in entries:
                writer.writerows([label, *[_cell(c) for c in row]] for row in table.rows)
        written.append(path)
    return written


def write_csv(reports: dict[str, dict[str, Any]], directory: Path) -> list[Path]:
    """tasks.csv, phases.csv, phase_summary.csv and fast_p.csv, one row per run and task
    (phase, baseline...): ``pandas.read_csv`` ready."""
    directory = _out_dir(directory)
    modes = list(dict.fromkeys(m for rep in reports.values() for m in rep["baselines"]))
    files = {name: directory / f"{name}.csv"
             for name in ("tasks", "phases", "phase_summary", "fast_p")}
    with open(files["tasks"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "task", "correct", "best_runtime_ms",
                         *[f"baseline_{m}_ms" for m in modes],
                         *[f"speedup_{m}{end}" for m in modes for end in SPEEDUP_COLUMNS],
                         "candidates", "correct_candidates", *[f"n_{s}" for s in STATUSES],
                         "flags", "best_solution"])
        for label, rep in reports.items():
            for task_id, t in rep["tasks"].items():
                writer.writerow([label, task_id, t["correct"], _cell(t["best_runtime_ms"]),
                                 *[_cell(t["baselines_ms"].get(m)) for m in modes],
                                 *[cell for m in modes for cell in _speedup_cells(t, m)],
                                 t["candidates"], t["correct_candidates"],
                                 *[t["statuses"].get(s, 0) for s in STATUSES],
                                 ";".join(t["flags"]), _cell(t["best_solution"])])
    with open(files["phases"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "task", "phase", "best_runtime_ms", "best_so_far_ms",
                         "correct_candidates",
                         *[f"speedup_{m}{end}" for m in modes for end in SPEEDUP_COLUMNS]])
        for label, rep in reports.items():
            for phase in rep["phases"]:
                for task_id, t in phase["tasks"].items():
                    writer.writerow([label, task_id, phase["phase"], _cell(t["best_runtime_ms"]),
                                     _cell(t["best_so_far_ms"]), t["correct_candidates"],
                                     *[cell for m in modes for cell in _speedup_cells(t, m)]])
    with open(files["phase_summary"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "phase", "baseline", "correct_tasks", "n_tasks",
                         "geomean_speedup_correct_tasks", "geomean_speedup_all_tasks_clamped",
                         *[f"fast_{k}" for k in P_KEYS]])
        for label, rep in reports.items():
            for phase in rep["phases"]:
                means = phase["geomean_speedup"]
                for m in rep["baselines"]:
                    writer.writerow([label, phase["phase"], m, phase["correct_tasks"],
                                     rep["n_tasks"], _cell(means[CORRECT_ONLY][m]),
                                     _cell(means[CLAMPED][m]),
                                     *[_cell(phase["fast_p"][m][k]) for k in P_KEYS]])
    with open(files["fast_p"], "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "baseline", "p", "fast_p"])
        for label, rep in reports.items():
            for m in rep["baselines"]:
                for k in P_KEYS:
                    writer.writerow([label, m, k, _cell(rep["fast_p"][m][k])])
    return list(files.values())


def _safe(label: str) -> str:
    return re.sub(r"[^\w.-]+", "_", label).strip("_") or "run"


def export_best(runs: dict[str, RunData], directory: Path) -> list[Path]:
    """The best solution of each task as ``DIR/<task id, / as _>.py`` (one run) or
    ``DIR/<run>/<task>.py`` (several runs)."""
    directory = _out_dir(directory)
    written = []
    names: set[str] = set()
    for label, run in runs.items():
        target = directory
        if len(runs) > 1:  # a model of a predictions run: the run's name and the model's
            name = _safe(run.dir.name if run.only is None else f"{run.dir.name}_{run.model}")
            if name in names:
                name = _safe(label)
            names.add(name)
            target = _out_dir(directory / name)
        for task in run.tasks.values():
            if not task.correct or not task.best_solution:
                continue
            source = Path(task.best_solution)
            source = source if source.is_absolute() else run.dir / source
            if not source.is_file():
                print(f"kbtool: warning: {task.id}: best solution {source} is missing",
                      file=sys.stderr)
                continue
            dest = target / f"{task.id.replace('/', '_')}{source.suffix}"
            shutil.copyfile(source, dest)
            written.append(dest)
    return written


# -- the command ---------------------------------------------------------------------------------

def _labels(paths: list[Path]) -> list[str]:
    labels: list[str] = []
    for path in paths:
        label, n = str(path), 1
        while label in labels:
            n += 1
            label = f"{path} #{n}"
        labels.append(label)
    return labels


def main(run_dirs: list[Path], as_json: bool = False, csv_dir: Path | None = None,
         export_dir: Path | None = None, plots_dir: Path | None = None) -> None:
    if not run_dirs:
        raise UsageError("kbtool report needs at least one RUN_DIR")
    for option, target in (("--csv", csv_dir), ("--export", export_dir), ("--plots", plots_dir)):
        if target is not None and target.exists() and not target.is_dir():
            raise UsageError(f"{option} {target}: exists and is not a directory")
    from kbtool.report.predictions import by_model

    runs = by_model(dict(zip(_labels(run_dirs), (load_run(Path(d)) for d in run_dirs),
                             strict=True)))
    made = {label: report_of(run) for label, run in runs.items()}
    reports = {label: report for label, (report, _) in made.items()}
    sections = {label: found for label, (_, found) in made.items()}
    if as_json:
        print(json.dumps(combined_json(reports), allow_nan=False))
    else:
        print_reports(reports, sections)
    if csv_dir is not None:
        files = write_csv(reports, csv_dir) + write_kind_csv(sections, csv_dir)
        print(f"kbtool report: wrote {', '.join(f.name for f in files)} to {csv_dir}",
              file=sys.stderr)
    if export_dir is not None:
        from kbtool.report.export import write_dataset

        files = export_best(runs, export_dir)
        print(f"kbtool report: exported {len(files)} best solutions to {export_dir}",
              file=sys.stderr)
        data = write_dataset(runs, export_dir)
        print(f"kbtool report: wrote {data.rows} evaluations as a data set to {data.path}",
              file=sys.stderr)
    if plots_dir is not None:
        files = write_figures(reports, sections, plots_dir)
        print(f"kbtool report: wrote {len(files)} figures to {plots_dir}", file=sys.stderr)


def write_figures(reports: dict[str, dict[str, Any]], sections: dict[str, list[KindReport]],
                  directory: Path) -> list[Path]:
    """The report's figures and each kind's (``--plots``)."""
    from kbtool.report.plots import write_plots

    files = write_plots(reports, directory)
    for found in sections.values():
        files += [f for s in found if s.plot is not None for f in s.plot(directory)]
    return files


def report_of(run: RunData) -> tuple[dict[str, Any], list[KindReport]]:
    """One run's report, its kinds' data included (the ``--json`` object), and the kinds'
    sections."""
    report = build_report(run)
    sections = kind_reports(run)
    report["kinds"] = _finite({s.kind: s.data for s in sections})
    for section in run.sections:
        report[section.kind] = _finite(section.data)
    return report, [*run.sections, *sections]
