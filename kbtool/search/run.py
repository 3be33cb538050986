"""``kbtool run``: drive a search strategy over tasks, durably, and summarise it."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kbtool.config.settings import Config, load_config
from kbtool.errors import KbtoolError
from kbtool.llm.client import LLMClient
from kbtool.llm.model import ProviderError
from kbtool.plugin import manager as plugins
from kbtool.runs.store import SUMMARY, RunStore, write_atomic
from kbtool.search.engine import SearchContext, make_backend, make_provider, task_summary
from kbtool.task import catalog
from kbtool.task.model import Task
from kbtool.ui.display import RunDisplay

TASKS_FILE = "tasks.json"


def default_run_dir(config: Config) -> Path:
    return config.data_dir / "runs" / time.strftime("%Y%m%d-%H%M%S")


def _strategy(config: Config) -> Any:
    strategies = plugins.collect("register_search_strategies")
    if config.strategy not in strategies:
        raise KbtoolError(f"unknown strategy {config.strategy!r} "
                          f"(strategies: {', '.join(sorted(strategies))})")
    return strategies[config.strategy]


def plan_calls(config: Config, tasks: list[Task]) -> int:
    """Most LLM calls the run can make (budgets may stop it earlier)."""
    if config.strategy == "budget":
        return len(tasks) * config.query_budget
    return len(tasks) * (1 + config.num_phases * config.num_samples * (config.max_fix_attempts + 1))


def start(config: Config, words: list[str]) -> dict[str, Any]:
    """A new run over the tasks named by ``words`` (ids or files) or selected by config."""
    tasks = [catalog.resolve(w, config) for w in words] if words else catalog.select(config)
    if not tasks:
        raise KbtoolError("no tasks selected (check source, level, task_start, task_end)")
    run_dir = config.run_dir or default_run_dir(config)
    config = config.model_copy(update={"run_dir": run_dir})
    _strategy(config)
    store = RunStore(run_dir)
    store.save_config(config)
    write_atomic(run_dir / TASKS_FILE, json.dumps(
        [{"id": t.id, "path": str(t.path)} for t in tasks], indent=1))
    return _execute(config, store, tasks, resumed=False)


def resume(run_dir: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """Continue a run: every recorded LLM answer and evaluation is reused, not repeated."""
    store = RunStore(run_dir, resume=True)
    saved = store.load_config()
    config = load_config({**saved, **overrides, "run_dir": str(run_dir)})
    tasks = []
    for item in json.loads((run_dir / TASKS_FILE).read_text()):
        word = item["path"] if item["id"].startswith("file/") else item["id"]
        tasks.append(catalog.resolve(word, config))
    if overrides:
        store.save_config(config)
    return _execute(config, store, tasks, resumed=True)


def _execute(config: Config, store: RunStore, tasks: list[Task], resumed: bool) -> dict[str, Any]:
    strategy = _strategy(config)
    provider_name, model, provider = make_provider(config)
    display = RunDisplay(len(tasks), enabled=not config.dry_run)

    def emit(event: dict[str, Any]) -> None:
        store.emit(event)
        display.event(event)

    pool = make_backend(config)
    try:
        env = pool.env
        device = (f"{env.get('device_name')} (a GPU)" if env.get("device") == "cuda" else
                  f"a CPU ({env.get('device_name')}, {env.get('num_threads')} threads)"
                  if env else "the workers' device")
        llm = LLMClient(provider, config, store.calls_dir, on_event=emit)
        ctx = SearchContext(config, store, llm, provider_name, model, pool, device)
        if config.dry_run:
            return _dry_run(ctx, tasks)
        emit({"type": "run_started", "tasks": [t.id for t in tasks], "resumed": resumed,
              "model": config.model_name, "strategy": config.strategy, "env": env})
        status = "finished"
        try:
            threads = [threading.Thread(target=_run_task, args=(ctx, strategy, task, emit),
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
            summary = write_summary(ctx, tasks, status)
            emit({"type": "run_finished", "status": status})
            display.close()
        return summary
    finally:
        pool.close()
        store.close()


def _run_task(ctx: SearchContext, strategy: Any, task: Task, emit: Any) -> None:
    record = ctx.record(task)
    emit({"type": "task_started", "task": task.id})
    try:
        for mode in ctx.config.baselines:
            stats = ctx.pool.baseline(task, mode)
            record.baselines[mode] = stats
            emit({"type": "baseline", "task": task.id, "mode": mode, "ms": stats.median_ms})
        strategy(ctx, task)
    except KbtoolError as exc:  # e.g. too large for this machine: the other tasks go on
        emit({"type": "task_skipped", "task": task.id, "reason": str(exc)[:1000]})
        return
    except Exception as exc:  # a bug in a strategy must not lose the other tasks' work
        emit({"type": "task_failed", "task": task.id, "error": f"{type(exc).__name__}: {exc}"})
        print(f"kbtool: task {task.id} failed: {exc!r}", file=sys.stderr)
        return
    summary = task_summary(ctx, task)
    emit({"type": "task_done", "task": task.id, "correct": summary["correct"],
          "best_runtime_ms": summary["best_runtime_ms"], "speedup": summary["speedup"]})


def write_summary(ctx: SearchContext, tasks: list[Task], status: str) -> dict[str, Any]:
    usage = ctx.llm.usage
    summary = {
        "status": status, "model": ctx.config.model_name, "strategy": ctx.config.strategy,
        "budget": ctx.llm.exhausted,
        "tasks": {task.id: task_summary(ctx, task) for task in tasks},
        "totals": {"calls": usage.calls, "paid_calls": usage.paid_calls,
                   "cached_calls": usage.cached_calls, "prompt_tokens": usage.prompt_tokens,
                   "completion_tokens": usage.completion_tokens,
                   "cost_usd": round(usage.cost_usd, 6), "llm_errors": usage.errors,
                   "evaluations": len(list((ctx.store.dir / "evals").glob("*.json")))},
    }
    write_atomic(ctx.store.dir / SUMMARY, json.dumps(summary, indent=2))
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
            raise KbtoolError(f"provider {ctx.provider}: {exc}") from None
    for task in tasks:
        info = ctx.pool.inspect(task)  # the task loads and fits here
        ideas = ctx.render("ideas", task)
        first = ctx.render("generate", task, idea="(the first idea from the ideas step)")
        base = Path("plan") / task.id.replace("/", "_")
        ctx.store.write(base / "ideas_prompt.md", ideas)
        ctx.store.write(base / "generate_prompt.md", first)
        plan["tasks"][task.id] = {"sizes": info.get("sizes"), "dtype": info.get("dtype"),
                                  "prompts": str(base)}
    write_atomic(ctx.store.dir / "plan.json", json.dumps(plan, indent=2, default=str))
    return plan
