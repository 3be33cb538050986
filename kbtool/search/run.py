"""``kbtool run``: drive a search strategy over tasks, durably, and summarise it."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from kbtool.config import Config, load_config
from kbtool.errors import KbtoolError, UsageError
from kbtool.evaluation.backend import EvalBackend, backend_name, make_backend
from kbtool.evaluation.result import Status
from kbtool.llm.client import LLMClient
from kbtool.llm.model import ProviderError
from kbtool.llm.serve import ModelServers
from kbtool.plugin import registry
from kbtool.runs.events import (
    Baseline,
    RunFinished,
    RunStarted,
    TaskDone,
    TaskFailed,
    TaskSkipped,
    TaskStarted,
)
from kbtool.runs.layout import RunLayout
from kbtool.runs.provenance import task_hash
from kbtool.runs.store import RunStore
from kbtool.runs.summary import RunSummary
from kbtool.search.engine import SearchContext, make_provider, task_summary
from kbtool.task import catalog
from kbtool.task.model import Task
from kbtool.ui.display import RunDisplay
from kbtool.util.files import write_atomic

log = logging.getLogger(__name__)


def default_run_dir(config: Config) -> Path:
    return config.data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")


def plan_calls(config: Config, tasks: list[Task]) -> int:
    """Most LLM calls the run can make (budgets may stop it earlier)."""
    if config.strategy == "budget":
        return len(tasks) * config.query_budget
    return len(tasks) * (1 + config.num_phases * config.num_samples * (config.max_fix_attempts + 1))


def run_baselines(config: Config, tasks: list[Task]) -> list[str]:
    """The baselines the run times: ``baselines`` or every baseline of the tasks' kinds."""
    if config.baselines is not None:
        return list(config.baselines)
    names: list[str] = []
    for task in tasks:
        names += [b for b in catalog.kind_of(task).baselines if b not in names]
    return names


def start(config: Config, words: list[str]) -> RunSummary | dict[str, Any]:
    """A new run over the tasks named by ``words`` (ids or files) or selected by config."""
    tasks = [catalog.resolve(w, config) for w in words] if words else catalog.select(config)
    if not tasks:
        raise UsageError("no tasks selected (check source, level, task_start, task_end)")
    catalog.check_settings(tasks, config)
    run_dir = (config.run_dir or default_run_dir(config)).absolute()
    config = config.model_copy(update={"run_dir": run_dir})
    registry.STRATEGIES.get(config.strategy)
    if config.tracker and not config.dry_run:
        from kbtool.tracking.session import RunTrackers

        RunTrackers.check(config)  # before the run directory is made
    store = RunStore(run_dir)
    store.save_config(config)
    write_atomic(store.layout.tasks, json.dumps(
        [{"id": t.id, "path": str(t.path), "kind": t.kind,
          "labels": catalog.kind_of(t).labels(t), "hash": task_hash(t)} for t in tasks],
        indent=1))
    return _execute(config, store, tasks, resumed=False)


def resume(run_dir: Path, overrides: dict[str, Any]) -> RunSummary | dict[str, Any]:
    """Continue a run: every recorded LLM answer and evaluation is reused, not repeated."""
    if RunLayout(run_dir).predictions.is_file():  # no search to continue: no LLM to call
        raise UsageError(f"{run_dir} judges predictions (kbtool eval --predictions); continue "
                         f"it with kbtool eval --predictions FILE run_dir={run_dir}")
    store = RunStore(run_dir, resume=True)
    config = load_config({**store.load_config(), **overrides, "run_dir": str(store.dir)})
    tasks = []
    for item in json.loads(store.layout.tasks.read_text()):
        word = item["path"] if item["id"].startswith("file/") else item["id"]
        tasks.append(catalog.resolve(word, config))
    if overrides:
        store.save_config(config)
    return _execute(config, store, tasks, resumed=True)


def _execute(config: Config, store: RunStore, tasks: list[Task],
             resumed: bool) -> RunSummary | dict[str, Any]:
    strategy = registry.STRATEGIES.get(config.strategy)
    provider_name, model, provider = make_provider(config)
    servers = ModelServers.from_config(config, model, config.serve_log_dir or store.dir / "serve") \
        if config.autorun else None
    if servers is not None:  # each task's calls meet one server, whose prefix cache they fill
        provider = servers.router(config, [t.id for t in tasks])
    display = RunDisplay(len(tasks), plan_calls(config, tasks), enabled=not config.dry_run,
                         run_dir=store.dir, interval_s=config.progress_interval_s)
    store.subscribe(display.event)
    # Every evaluation times the reference under all of them, in the candidate's rounds.
    baselines = run_baselines(config, tasks)
    config = config.model_copy(update={"baselines": baselines})
    backend = backend_name(config)
    workers = config.eval_workers
    display.note(f"starting the {backend} evaluation backend"
                 + (f" ({workers} evaluator{'s' * (workers != 1)})" if backend == "local" else ""))
    pool: EvalBackend | None = None
    trackers = None
    try:
        pool = make_backend(config)
        if config.tracker and not config.dry_run:
            from kbtool.tracking.session import RunTrackers

            opened = RunTrackers(config, store, tasks)
            opened.start(resumed)  # closes what it opened if one fails
            trackers = opened
            store.subscribe(trackers.event)
        if servers is not None and not config.dry_run:
            servers.start()
        env = pool.env
        device = (f"{env.get('device_name')} (a GPU)" if env.get("device") == "cuda" else
                  f"a CPU ({env.get('device_name')}, {env.get('num_threads')} threads)"
                  if env else "the workers' device")
        llm = LLMClient(provider, config, store.calls_dir, on_event=store.emit)
        ctx = SearchContext(config, store, llm, provider_name, model, pool, device)
        if config.dry_run:
            return _dry_run(ctx, tasks)
        modes = {catalog.kind_of(t).resolve_mode(config) for t in tasks} - {None}
        store.emit(RunStarted(tasks=[t.id for t in tasks], resumed=resumed,
                              model=config.model_name, strategy=config.strategy, env=env,
                              mode=next(iter(modes)) if len(modes) == 1 else None,
                              baselines=baselines, kinds={t.id: t.kind for t in tasks}))
        status = "finished"
        try:
            threads = [threading.Thread(target=_run_task, args=(ctx, strategy, task, baselines),
                                        daemon=True) for task in tasks]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
            if llm.exhausted:
                status = "budget_exhausted"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        finally:
            summary = write_summary(ctx, tasks, status, baselines,
                                    next(iter(modes)) if len(modes) == 1 else None)
            store.emit(RunFinished(status=status))
            failed = summary.totals.get("internal_errors")
            if failed:
                log.error("kbtool failed while judging %d candidate(s) (status internal_error: "
                          "no verdict, not the model's failure; their eval.json files hold "
                          "the errors)", failed)
            if trackers is not None:
                trackers.finish(status)
                trackers = None
        return summary
    finally:
        display.close()
        if trackers is not None:  # the run stopped before its search: close them
            trackers.finish("failed")
        if servers is not None:
            servers.stop()
        if pool is not None:
            pool.close()
        store.close()


def _run_task(ctx: SearchContext, strategy: Any, task: Task, baselines: list[str]) -> None:
    record = ctx.record(task)
    emit = ctx.store.emit
    emit(TaskStarted(task=task.id))
    try:
        kind = ctx.kind(task)
        for mode in [b for b in baselines if b in kind.baselines]:
            stats = ctx.pool.baseline(task, mode, ctx.task_config(task))
            record.baselines[mode] = stats
            emit(Baseline(task=task.id, mode=mode, ms=stats.median_ms))
        strategy(ctx, task)
    except KbtoolError as exc:  # e.g. too large for this machine: the other tasks go on
        emit(TaskSkipped(task=task.id, reason=str(exc)[:1000]))
        return
    except Exception as exc:  # a bug in a strategy must not lose the other tasks' work
        emit(TaskFailed(task=task.id, error=f"{type(exc).__name__}: {exc}"))
        log.error("task %s failed: %r", task.id, exc)
        log.debug("traceback of task %s", task.id, exc_info=True)
        return
    summary = task_summary(ctx, task)
    emit(TaskDone(task=task.id, correct=summary.correct,
                  best_runtime_ms=summary.best_runtime_ms, speedup=summary.speedup))


def write_summary(ctx: SearchContext, tasks: list[Task], status: str, baselines: list[str],
                  mode: str | None) -> RunSummary:
    usage = ctx.llm.usage
    tasks_summary = {task.id: task_summary(ctx, task) for task in tasks}
    summary = RunSummary(
        status=status, model=ctx.config.model_name, strategy=ctx.config.strategy,
        budget=ctx.llm.exhausted, mode=mode, baselines=baselines, tasks=tasks_summary,
        totals={"calls": usage.calls, "paid_calls": usage.paid_calls,
                "cached_calls": usage.cached_calls, "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost_usd": round(usage.cost_usd, 6), "llm_errors": usage.errors,
                "evaluations": len(list(ctx.store.layout.evals.glob("*.json"))),
                "internal_errors": sum(t.statuses.get(Status.internal_error.value, 0)
                                       for t in tasks_summary.values())})
    write_atomic(ctx.store.layout.summary, summary.model_dump_json(indent=2))
    return summary


def _dry_run(ctx: SearchContext, tasks: list[Task]) -> dict[str, Any]:
    """Render what the first calls would send and write the plan; no call, no evaluation."""
    plan: dict[str, Any] = {"dry_run": True, "model": ctx.config.model_name,
                            "strategy": ctx.config.strategy, "tasks": {},
                            "max_llm_calls": plan_calls(ctx.config, tasks),
                            "evaluator": ctx.pool.env}
    check = getattr(ctx.llm.provider, "check", None)
    if check is not None:
        try:
            check()  # credentials and endpoint, without a call
        except ProviderError as exc:
            raise UsageError(f"provider {ctx.provider}: {exc}") from None
    layout: RunLayout = ctx.store.layout
    for task in tasks:
        info = ctx.pool.inspect(task, ctx.task_config(task))  # the task loads and fits here
        ideas = ctx.render("ideas", task)
        first = ctx.render("generate", task, idea="(the first idea from the ideas step)")
        base = layout.plan_dir(task.id)
        ctx.store.write(base / "ideas_prompt.md", ideas)
        ctx.store.write(base / "generate_prompt.md", first)
        plan["tasks"][task.id] = {"kind": task.kind, "info": info,
                                  "prompts": layout.relative(base)}
    write_atomic(layout.plan, json.dumps(plan, indent=2, default=str))
    return plan
