"""Predictions judged into a run directory, each distinct one once.

The run directory is ``kbtool run``'s (``kbtool.runs.layout``), so ``kbtool report`` and
``kbtool monitor`` read it: a prediction is a candidate at
``tasks/<task>/phase0/agent<A>/step0/candidate<suffix>``, ``A`` its place among its task's
predictions in the order they were first read (a model's samples keep their order), with
``prediction.json`` (whose it is: ``PredictionRecord``), ``eval.json`` (its verdict) and,
where the prediction was a reply rather than plain code, ``response.md`` (the reply).
``predictions.json`` at the root lists the models and the sources judged into the run.

A prediction is identified by its task, its model and its patch (``key``, a SHA-256):
``evals/<key>.json`` holds its verdict, so nothing judged is judged again, whether a second
call reads the same file or a model sent the same patch twice.  kbtool's own failures
(``internal_error``) are no verdict and are judged again by the next call.  A model's n-th
prediction for a task keeps its place: a later call whose file holds another patch there,
or that asks for other settings, is refused in one line before anything runs, so one run
never mixes two sets of predictions or two sets of settings.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kbtool.config import Config, eval_settings
from kbtool.errors import KbtoolError, UsageError
from kbtool.evaluation.backend import EvalBackend, make_backend
from kbtool.evaluation.result import EvalResult, Status
from kbtool.plugin import registry
from kbtool.predictions.files import Entry
from kbtool.predictions.model import PredictionRecord, PredictionsManifest
from kbtool.runs.events import (
    Baseline,
    Eval,
    RunFinished,
    RunStarted,
    TaskDone,
    TaskSkipped,
    TaskStarted,
)
from kbtool.runs.layout import RunLayout, safe_name
from kbtool.runs.provenance import candidate_hash, task_hash
from kbtool.runs.store import RunStore, read_events
from kbtool.runs.summary import RunSummary, TaskSummary, summarize_task
from kbtool.search.engine import Candidate
from kbtool.search.run import run_baselines
from kbtool.task.catalog import check_settings, kind_of
from kbtool.task.model import Task
from kbtool.ui.display import RunDisplay
from kbtool.util.files import write_atomic

log = logging.getLogger(__name__)

STRATEGY = "predictions"  # the run's strategy, as summary.json and run_started name it


def prediction_key(task_id: str, model: str, patch: str) -> str:
    """What a prediction is judged once by: its task, its model and its patch."""
    return candidate_hash(f"{task_id}\n{model}\n{patch}")[:40]


def default_run_dir(config: Config, source: Path) -> Path:
    """``data_dir/runs/predictions-<file or folder name>``: the same for a second call."""
    return config.data_dir / "runs" / f"predictions-{safe_name(source.stem or source.name)}"


@dataclass
class Slot:
    """One prediction's place in the run."""

    entry: Entry
    sample: int
    key: str
    step_dir: Path

    @property
    def task(self) -> Task:
        return self.entry.task

    @property
    def agent(self) -> int:
        return int(self.step_dir.parent.name.removeprefix("agent"))


@dataclass
class Outcome:
    run_dir: Path
    slots: list[Slot]
    results: dict[str, EvalResult] = field(default_factory=dict)  # key -> its verdict
    judged: int = 0            # evaluations this call ran
    skipped: dict[str, str] = field(default_factory=dict)  # task -> why it was not judged
    summary: RunSummary | None = None

    def statuses(self) -> dict[str, dict[str, int]]:
        """Per model: its predictions by status (``not_judged``: a skipped task's)."""
        counts: dict[str, dict[str, int]] = {}
        for slot in self.slots:
            result = self.results.get(slot.key)
            status = result.status.value if result is not None else "not_judged"
            model = counts.setdefault(slot.entry.model, {})
            model[status] = model.get(status, 0) + 1
        return counts

    def as_json(self) -> dict[str, Any]:
        """``kbtool eval --predictions --json``: each prediction's place and verdict."""
        rows = []
        for slot in self.slots:
            result = self.results.get(slot.key)
            rows.append({"instance_id": slot.entry.instance_id, "task": slot.task.id,
                         "model": slot.entry.model, "sample": slot.sample,
                         "source": slot.entry.where, "key": slot.key,
                         "candidate": RunLayout(self.run_dir).relative(slot.step_dir),
                         "status": result.status.value if result is not None else None,
                         "speedup": result.speedup if result is not None else None,
                         "speedup_ci": result.speedup_ci if result is not None else None})
        return {"run_dir": str(self.run_dir), "judged": self.judged,
                "models": self.statuses(), "skipped": self.skipped, "predictions": rows}


def recorded(layout: RunLayout) -> dict[tuple[str, str, int], tuple[PredictionRecord, Path]]:
    """The predictions a run holds: (task, model, sample) -> (record, its step folder)."""
    found = {}
    for path in sorted(layout.root.glob("tasks/*/phase0/agent*/step0/prediction.json")):
        try:
            record = PredictionRecord.model_validate_json(path.read_text())
        except (OSError, ValidationError) as exc:
            raise UsageError(f"{path} is unreadable ({str(exc).splitlines()[0]}); the run "
                             "directory was damaged: judge into a new run_dir") from None
        found[(record.task, record.model, record.sample)] = (record, path.parent)
    return found


def _next_agents(layout: RunLayout, task_ids: Iterable[str]) -> dict[str, int]:
    agents = {}
    for task_id in task_ids:
        used = [int(p.name.removeprefix("agent"))
                for p in (layout.task_dir(task_id) / "phase0").glob("agent*")
                if p.name.removeprefix("agent").isdigit()]
        agents[task_id] = max(used, default=-1) + 1
    return agents


def place(entries: list[Entry], layout: RunLayout) -> list[Slot]:
    """Each prediction's place: the one an earlier call gave it, or the next free one of its
    task.  A place that holds another patch now is refused (``UsageError``)."""
    existing = recorded(layout)
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries:
        groups.setdefault((entry.task.id, entry.model), []).append(entry)
    free = _next_agents(layout, dict.fromkeys(e.task.id for e in entries))
    slots = []
    for (task_id, model), group in groups.items():
        for sample, entry in enumerate(sorted(group, key=lambda e: e.order)):
            key = prediction_key(task_id, model, entry.patch)
            found = existing.get((task_id, model, sample))
            if found is not None:
                record, step_dir = found
                if record.key != key:
                    raise UsageError(
                        f"{entry.where}: prediction #{sample + 1} of {model} for {task_id} is "
                        f"not the one {layout.root} judged (from {record.source}); a run keeps "
                        "what it judged: give another run_dir, or keep earlier predictions "
                        "as they were and add new ones after them")
            else:
                step_dir = layout.step_dir(task_id, 0, free[task_id], 0)
                free[task_id] += 1
            slots.append(Slot(entry, sample, key, step_dir))
    return slots


def _settings_changed(before: str, now: str) -> str:
    """The settings that differ between two ``eval_settings`` dumps, in a few words."""
    def flat(data: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(data, dict):
            out: dict[str, Any] = {}
            for key, value in data.items():
                out.update(flat(value, f"{prefix}{key}."))
            return out
        return {prefix.rstrip("."): data}

    old, new = flat(json.loads(before)), flat(json.loads(now))
    names = sorted(k.removeprefix("sections.") for k in set(old) | set(new)
                   if old.get(k) != new.get(k))
    return ", ".join(f"{n} ({old.get('sections.' + n, old.get(n))!r} -> "
                     f"{new.get('sections.' + n, new.get(n))!r})" for n in names[:4])


def _manifest(layout: RunLayout, fingerprint: str) -> PredictionsManifest:
    """The run's record, continued (same settings only) or new (an empty run_dir only)."""
    if layout.predictions.is_file():
        try:
            manifest = PredictionsManifest.model_validate_json(layout.predictions.read_text())
        except (OSError, ValidationError) as exc:
            raise UsageError(f"{layout.predictions} is unreadable "
                             f"({str(exc).splitlines()[0]})") from None
        if manifest.eval_settings != fingerprint:
            raise UsageError(f"{layout.root} judged its predictions with other settings: "
                             f"{_settings_changed(manifest.eval_settings, fingerprint)}; "
                             "use them again, or give another run_dir")
        return manifest
    if layout.root.exists() and (not layout.root.is_dir() or any(layout.root.iterdir())):
        raise UsageError(f"run_dir {layout.root} exists and is not a predictions run; give "
                         "another run_dir")
    return PredictionsManifest(eval_settings=fingerprint)


def _task_list(layout: RunLayout, tasks: list[Task]) -> list[dict[str, Any]]:
    """``tasks.json``: the run's tasks, those of earlier calls first."""
    try:
        listed = json.loads(layout.tasks.read_text())
    except (OSError, ValueError):
        listed = []
    known = {item.get("id") for item in listed if isinstance(item, dict)}
    return [*listed, *[{"id": t.id, "path": str(t.path), "kind": t.kind,
                        "labels": kind_of(t).labels(t), "hash": task_hash(t)}
                       for t in tasks if t.id not in known]]


def judge(config: Config, source: Path, entries: list[Entry]) -> Outcome:
    """Judge every prediction not judged yet into the run directory (``run_dir``, else
    ``default_run_dir``); returns what the run holds of these predictions."""
    run_dir = (config.run_dir or default_run_dir(config, source)).absolute()
    layout = RunLayout(run_dir)
    fingerprint = json.dumps(eval_settings(config), sort_keys=True)
    tasks = list({e.task.id: e.task for e in entries}.values())
    check_settings(tasks, config)
    manifest = _manifest(layout, fingerprint)
    continuing = layout.predictions.is_file()
    slots = place(entries, layout)  # refuses before anything is written
    listed = _task_list(layout, tasks)
    all_tasks = {t.id: t for t in tasks}
    baselines = run_baselines(config, tasks)
    config = config.model_copy(update={"baselines": baselines, "run_dir": run_dir})
    store = RunStore(run_dir, resume=continuing) if continuing else RunStore(run_dir)
    try:
        store.save_config(config)
        write_atomic(layout.tasks, json.dumps(listed, indent=1))
        manifest.models += [m for m in dict.fromkeys(e.model for e in entries)
                            if m not in manifest.models]
        if str(source.absolute()) not in manifest.sources:
            manifest.sources.append(str(source.absolute()))
        write_atomic(layout.predictions, manifest.model_dump_json(indent=1))
        return _run(config, store, slots, all_tasks, listed, baselines, manifest, continuing)
    finally:
        store.close()


def _run(config: Config, store: RunStore, slots: list[Slot], tasks: dict[str, Task],
         listed: list[dict[str, Any]], baselines: list[str], manifest: PredictionsManifest,
         resumed: bool) -> Outcome:
    layout = store.layout
    outcome = Outcome(layout.root, slots)
    modes = {kind_of(t).resolve_mode(config) for t in tasks.values()} - {None}
    mode = next(iter(modes)) if len(modes) == 1 else None
    todo: dict[str, list[Slot]] = {}
    for slot in slots:
        cached = layout.eval_record(slot.key)
        if cached.is_file():
            outcome.results[slot.key] = EvalResult.model_validate_json(cached.read_text())
        else:
            todo.setdefault(slot.key, []).append(slot)
    # Evaluation processes start only when something is left to judge.
    pool = make_backend(config) if todo else None
    status = "finished"
    display = None
    try:
        store.emit(RunStarted(tasks=[str(t["id"]) for t in listed], resumed=resumed,
                              model=", ".join(manifest.models), strategy=STRATEGY,
                              env=pool.env if pool is not None else {}, mode=mode,
                              baselines=baselines,
                              kinds={str(t["id"]): str(t["kind"]) for t in listed}))
        for slot in slots:  # judged earlier (or the same patch twice): their verdicts stand
            if slot.key in outcome.results:
                _record(store, slot, outcome.results[slot.key])
        waiting = [s for group in todo.values() for s in group]
        distinct = f" ({len(todo)} distinct)" if len(todo) != len(waiting) else ""
        print(f"kbtool: {_count(len(slots), 'prediction')} of "
              f"{_count(len({s.entry.model for s in slots}), 'model')} for "
              f"{_count(len({s.task.id for s in slots}), 'task')}: "
              f"{len(slots) - len(waiting)} judged already, {len(waiting)} to judge{distinct};"
              f" run {layout.root}", flush=True, file=sys.stderr)
        display = RunDisplay(len({s.task.id for s in waiting}), 0, enabled=bool(waiting),
                             evals=len(waiting), title="kbtool eval --predictions")
        store.subscribe(display.event)
        executor = ThreadPoolExecutor(config.eval_workers)
        try:
            if pool is not None:
                ready = _baselines(config, store, pool, tasks, todo, baselines, outcome)
                _judge_all(store, pool, ready, outcome, config, executor)
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            # Stopped early (interrupted, or kbtool's own error): nothing new starts, the
            # evaluations under way end with the evaluation processes, and what they found
            # is kept before the summary is written.
            executor.shutdown(wait=False, cancel_futures=True)
            if pool is not None:
                pool.close()
                pool = None
            executor.shutdown(wait=True)
            outcome.summary = write_summary(config, store, listed, status, baselines, mode)
            for task_id in dict.fromkeys(s.task.id for s in waiting):
                if task_id in outcome.skipped:
                    continue
                summary = outcome.summary.tasks.get(task_id, TaskSummary())
                store.emit(TaskDone(task=task_id, correct=summary.correct,
                                    best_runtime_ms=summary.best_runtime_ms,
                                    speedup=summary.speedup))
            store.emit(RunFinished(status=status))
    finally:
        if display is not None:
            display.close()
        if pool is not None:
            pool.close()
    return outcome


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def _baselines(config: Config, store: RunStore, pool: EvalBackend, tasks: dict[str, Task],
               todo: dict[str, list[Slot]], baselines: list[str],
               outcome: Outcome) -> dict[str, list[Slot]]:
    """Each task to judge starts as ``kbtool run`` starts it: its baselines timed (cached
    across runs); a task that cannot run here is skipped, its predictions left unjudged."""
    for task_id in dict.fromkeys(s.task.id for group in todo.values() for s in group):
        task = tasks[task_id]
        kind = kind_of(task)
        store.emit(TaskStarted(task=task_id))
        try:
            for name in [b for b in baselines if b in kind.baselines]:
                stats = pool.baseline(task, name, kind.configure(task, config))
                store.emit(Baseline(task=task_id, mode=name, ms=stats.median_ms))
        except KbtoolError as exc:
            outcome.skipped[task_id] = str(exc)
            store.emit(TaskSkipped(task=task_id, reason=str(exc)[:1000]))
    return {key: group for key, group in todo.items()
            if group[0].task.id not in outcome.skipped}


def _judge_all(store: RunStore, pool: EvalBackend, todo: dict[str, list[Slot]],
               outcome: Outcome, config: Config, executor: ThreadPoolExecutor) -> None:
    """Every distinct prediction, ``eval_workers`` at once."""
    futures = {executor.submit(_judge_one, config, store, pool, group): key
               for key, group in todo.items()}
    for future in as_completed(futures):
        outcome.results[futures[future]] = future.result()
        outcome.judged += 1


def _judge_one(config: Config, store: RunStore, pool: EvalBackend,
               group: list[Slot]) -> EvalResult:
    """One distinct prediction judged, its verdict kept and given to each of its places."""
    first = group[0]
    task = first.task
    kind = kind_of(task)
    path = _write_candidate(store, first)
    try:
        result = pool.evaluate(task, path, kind.configure(task, config))
    except KbtoolError as exc:  # e.g. the evaluation process died: kbtool's failure
        result = EvalResult(task=task.id, kind=task.kind, solution=str(path), device="?",
                            mode=config.mode, status=Status.internal_error, error=str(exc))
    if result.status != Status.internal_error:  # no verdict: judged again next time
        store.write(store.layout.eval_record(first.key), result.model_dump_json())
    for slot in group:
        _record(store, slot, result)
    return result


def _write_candidate(store: RunStore, slot: Slot) -> Path:
    """The candidate (what the task kind takes out of the prediction, as from a reply saved
    to a file) and, where it took something out, the prediction itself as ``response.md``."""
    kind = kind_of(slot.task)
    text = slot.entry.patch
    candidate = kind.candidate_from_file(text)
    if candidate != text:
        store.write(slot.step_dir / "response.md", text)
    path = store.layout.candidate(slot.step_dir, kind.candidate_suffix)
    if not path.is_file() or path.read_text() != candidate:
        store.write(path, candidate)
    record = PredictionRecord(instance_id=slot.entry.instance_id, task=slot.task.id,
                              model=slot.entry.model, sample=slot.sample, key=slot.key,
                              source=slot.entry.where)
    store.write(store.layout.prediction(slot.step_dir), record.model_dump_json(indent=1))
    return path


def _record(store: RunStore, slot: Slot, result: EvalResult) -> None:
    """A place's candidate, record and verdict, and its ``eval`` event (logged once)."""
    path = _write_candidate(store, slot)
    result = result.model_copy(update={"solution": str(path)})
    store.write(slot.step_dir / "eval.json", result.model_dump_json(indent=2))
    store.emit(Eval(sample=f"{slot.task.id}/p0/a{slot.agent}/s0", task=slot.task.id,
                    status=result.status.value, runtime_ms=result.runtime_ms,
                    baseline_ms=result.baseline_ms, speedup=result.speedup,
                    speedup_ci=result.speedup_ci, speedup_from=result.speedup_from,
                    speedups=result.speedups, noisy=result.noisy, flags=result.flags,
                    path=store.layout.relative(path), details=dict(result.model_extra or {}),
                    env=result.env, model=slot.entry.model))


def write_summary(config: Config, store: RunStore, listed: list[dict[str, Any]], status: str,
                  baselines: list[str], mode: str | None) -> RunSummary:
    """``summary.json`` of every prediction the run holds (all models: each task's best of
    them all, by the one rule; ``kbtool report`` gives each model its own)."""
    layout = store.layout
    per_task: dict[str, list[tuple[int, Candidate]]] = {}
    for record, step_dir in recorded(layout).values():
        try:
            result = EvalResult.model_validate_json((step_dir / "eval.json").read_text())
        except (OSError, ValidationError):
            continue  # not judged yet
        agent = int(step_dir.parent.name.removeprefix("agent"))
        path = Path(result.solution or layout.candidate(step_dir))
        per_task.setdefault(record.task, []).append(
            (agent, Candidate(record.task, 0, agent, 0, STRATEGY, path, result)))
    measured: dict[str, dict[str, float]] = {}
    for event in read_events(layout.root):
        if event.get("type") == "baseline" and isinstance(event.get("ms"), (int, float)):
            measured.setdefault(str(event.get("task")), {})[str(event.get("mode"))] = event["ms"]
    summaries = {}
    for item in listed:
        task_id = str(item["id"])
        candidates = [c for _, c in sorted(per_task.get(task_id, []), key=lambda x: x[0])]
        kind = registry.TASK_KINDS.all().get(str(item.get("kind")))
        summaries[task_id] = summarize_task(
            [c.attempt(layout.relative(c.path)) for c in candidates], measured.get(task_id, {}),
            kind.resolve_mode(config) if kind is not None else mode)
    internal = sum(s.statuses.get(Status.internal_error.value, 0) for s in summaries.values())
    summary = RunSummary(
        status=status, model=None, strategy=STRATEGY, mode=mode, baselines=baselines,
        tasks=summaries,
        totals={"calls": 0, "paid_calls": 0, "cached_calls": 0, "prompt_tokens": 0,
                "completion_tokens": 0, "cost_usd": 0.0, "llm_errors": 0,
                "evaluations": len(list(layout.evals.glob("*.json"))),
                "internal_errors": internal,
                "predictions": sum(len(c) for c in per_task.values())})
    write_atomic(layout.summary, summary.model_dump_json(indent=2))
    return summary
