"""The search engine: what every strategy needs (prompts, LLM calls, evaluations, records),
and the run that drives a strategy over many tasks at once.

Strategies (plugins, ``register_search_strategies``) are callables
``strategy(ctx: SearchContext, task: Task) -> None`` that run one task to the end, usually
with several chains of calls in threads.  Nothing waits for a round to finish: a chain's
fix prompt goes out as soon as its evaluation returns, and LLM calls and evaluations of
all tasks overlap, bounded only by ``num_workers`` and ``eval_workers``.
"""

from __future__ import annotations

import hashlib
import json
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbtool.config.settings import EVAL_KEYS, Config
from kbtool.errors import KbtoolError
from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.remote import evaluate_remote, make_job, queue_for
from kbtool.evaluation.result import EvalResult, Status, TimingStats
from kbtool.llm.client import BudgetExhausted, LLMClient
from kbtool.llm.model import ChatRequest, split_model_name
from kbtool.plugin import manager as plugins
from kbtool.runs.store import RunStore
from kbtool.search.prompts import Templates, extract_code
from kbtool.task.model import Task

Strategy = Callable[["SearchContext", Task], None]


@dataclass
class Candidate:
    """One evaluated candidate of the search tree."""

    task: str
    phase: int
    agent: int
    step: int
    branch: str                 # lineage: the seed it grew from ("reference" in phase 0)
    path: Path
    result: EvalResult

    @property
    def correct(self) -> bool:
        return self.result.status == Status.ok

    @property
    def runtime_ms(self) -> float:
        return self.result.runtime_ms or float("inf")


@dataclass
class TaskRecord:
    candidates: list[Candidate] = field(default_factory=list)
    baselines: dict[str, TimingStats] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, candidate: Candidate) -> None:
        with self.lock:
            self.candidates.append(candidate)

    def correct(self, phase: int | None = None) -> list[Candidate]:
        with self.lock:
            found = [c for c in self.candidates if c.correct and
                     (phase is None or c.phase == phase)]
        return sorted(found, key=lambda c: c.runtime_ms)


class EvaluatorPool:
    """Local evaluation: ``eval_workers`` evaluators (one per device), one job each at a time."""

    def __init__(self, config: Config) -> None:
        self._free: queue.Queue[Evaluator] = queue.Queue()
        # Started side by side: each start-up is a Python + torch import.
        with ThreadPoolExecutor(config.eval_workers) as starter:
            self.all = list(starter.map(lambda _: Evaluator(config), range(config.eval_workers)))
        for evaluator in self.all:
            self._free.put(evaluator)
        self.env = self.all[0].env

    @contextmanager
    def get(self) -> Iterator[Evaluator]:
        evaluator = self._free.get()
        try:
            yield evaluator
        finally:
            self._free.put(evaluator)

    def inspect(self, task: Task) -> dict[str, Any]:
        with self.get() as evaluator:
            return evaluator.inspect(task)

    def baseline(self, task: Task, mode: str) -> TimingStats:
        with self.get() as evaluator:
            return evaluator.baseline(task, mode)

    def evaluate(self, task: Task, path: Path) -> EvalResult:
        with self.get() as evaluator:
            return evaluator.evaluate(task, path)

    def close(self) -> None:
        with ThreadPoolExecutor(len(self.all)) as closer:
            list(closer.map(Evaluator.close, self.all))


class QueueBackend:
    """Evaluation by ``kbtool worker serve`` processes through the shared-directory queue."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.queue = queue_for(config)
        live = [w for w in self.queue.workers() if w.get("env") and not w.get("stopped")]
        self.env: dict[str, Any] = live[0]["env"] if live else {}

    def inspect(self, task: Task) -> dict[str, Any]:
        return {}  # the worker checks the task's size when it evaluates

    def baseline(self, task: Task, mode: str) -> TimingStats:
        config = self.config.model_copy(update={"mode": mode})
        job = make_job(task, "", config, kind="baseline")
        self.queue.submit(job)
        reply = self.queue.wait(job.id, self.config.queue_wait_s)
        if reply is None or reply.result is None:
            raise KbtoolError(f"baseline of {task.id} through the queue failed: "
                              f"{reply.error if reply else 'no worker answered'}")
        stats = EvalResult.model_validate(reply.result).timing
        assert stats is not None
        return stats

    def evaluate(self, task: Task, path: Path) -> EvalResult:
        return evaluate_remote(self.queue, task, path, self.config)

    def close(self) -> None:
        pass


def make_backend(config: Config) -> EvaluatorPool | QueueBackend:
    if config.worker_input_dir or config.worker_output_dir:
        return QueueBackend(config)
    return EvaluatorPool(config)


def make_provider(config: Config) -> tuple[str, str, Any]:
    provider_name, model = split_model_name(config.model_name, config.server_type)
    factories = plugins.collect("register_providers")
    if provider_name not in factories:
        import difflib

        close = difflib.get_close_matches(provider_name, list(factories), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else \
            f" (providers: {', '.join(sorted(factories))})"
        raise KbtoolError(f"unknown LLM provider {provider_name!r}{hint}")
    return provider_name, model, factories[provider_name](config)


class SearchContext:
    """What a strategy may use.  Thread-safe."""

    def __init__(self, config: Config, store: RunStore, llm: LLMClient, provider: str,
                 model: str, pool: EvaluatorPool | QueueBackend,
                 device_description: str) -> None:
        self.config = config
        self.store = store
        self.llm = llm
        self.provider, self.model = provider, model
        self.pool = pool
        self.templates = Templates(config.templates_dir)
        self.device_description = device_description
        self.records: dict[str, TaskRecord] = {}
        self._lock = threading.Lock()
        self._eval_locks: dict[str, threading.Lock] = {}
        fingerprint = {k: config.model_dump(mode="json")[k] for k in EVAL_KEYS}
        self._eval_fingerprint = json.dumps(fingerprint, sort_keys=True)

    # -- state ----------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        """True once a budget is exhausted: strategies start nothing new."""
        return self.llm.exhausted is not None

    def record(self, task: Task) -> TaskRecord:
        with self._lock:
            return self.records.setdefault(task.id, TaskRecord())

    # -- prompts ---------------------------------------------------------------------------
    def reference(self, task: Task) -> str:
        assert task.path is not None
        return task.path.read_text()

    def tolerance(self) -> str:
        tol = self.config.tolerances["float32"]
        return f"atol={tol.atol:g}, rtol={tol.rtol:g} for float32"

    def render(self, name: str, task: Task, **values: object) -> str:
        return self.templates.render(name, reference=self.reference(task),
                                     device_description=self.device_description,
                                     tolerance=self.tolerance(), **values)

    def feedback(self, result: EvalResult) -> str:
        """What a fix prompt tells the model about a failed candidate."""
        tail = (result.error or "")[-10_000:]
        if result.status == Status.incorrect:
            return (f"It ran but its outputs are wrong. Max abs difference per output: "
                    f"{result.max_abs_diff}.\n{tail}")
        if result.status == Status.rejected:
            return f"It was rejected by the integrity checks: {tail}"
        if result.status == Status.timeout:
            return f"It timed out after {self.config.timeout_s:g} s.\n{tail}"
        kind = "compile or load" if result.status == Status.compile_error else "run"
        return f"It failed to {kind}:\n{tail}"

    # -- LLM --------------------------------------------------------------------------------
    def ask(self, task: Task, sample: str, messages: list[tuple[str, str]],
            meta: dict[str, Any]) -> str | None:
        """The model's reply, or None when a budget is exhausted or the call failed."""
        request = ChatRequest(provider=self.provider, model=self.model,
                              messages=(("system", self.templates.render("system")),
                                        *messages),
                              temperature=self.config.temperature,
                              max_tokens=self.config.max_tokens, sample=sample,
                              meta={"task": task.id, **meta})
        try:
            return self.llm.complete(request).text
        except BudgetExhausted:
            return None
        except Exception as exc:  # a call that failed for good ends this chain only
            self.store.emit({"type": "llm_failed", "sample": sample, "error": str(exc)[:500]})
            return None

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, task: Task, code: str, path: Path, step: str) -> EvalResult:
        key = hashlib.sha256(f"{task.id}\n{self._eval_fingerprint}\n{code}".encode()) \
            .hexdigest()[:40]
        cached = self.store.dir / "evals" / f"{key}.json"
        with self._lock:
            key_lock = self._eval_locks.setdefault(key, threading.Lock())
        with key_lock:  # two chains with the same code: one evaluation
            if cached.exists():
                result = EvalResult.model_validate_json(cached.read_text())
            else:
                try:
                    result = self.pool.evaluate(task, path)
                except KbtoolError as exc:  # e.g. the evaluation process died
                    result = EvalResult(task=task.id, solution=str(path), device="?",
                                        mode=self.config.mode, status=Status.runtime_error,
                                        error=str(exc))
                self.store.write(Path("evals") / f"{key}.json", result.model_dump_json())
        self.store.emit({"type": "eval", "step": step, "task": task.id,
                         "status": result.status.value, "runtime_ms": result.runtime_ms,
                         "baseline_ms": result.baseline_ms, "speedup": result.speedup,
                         "flags": result.flags, "path": str(path.relative_to(self.store.dir))})
        return result

    # -- one chain: prompt -> reply -> candidate -> evaluation -> fix ... -------------------
    def chain(self, task: Task, phase: int, agent: int, branch: str,
              first_prompt: str) -> Candidate | None:
        """Up to ``max_fix_attempts + 1`` tries; returns the last evaluated candidate (the
        first correct one ends the chain)."""
        messages: list[tuple[str, str]] = [("user", first_prompt)]
        last = None
        for step in range(self.config.max_fix_attempts + 1):
            if self.stopped:
                break
            where = self.store.step_dir(task.id, phase, agent, step)
            sample = f"{task.id}/p{phase}/a{agent}/s{step}"
            self.store.write(where.relative_to(self.store.dir) / "prompt.md", messages[-1][1])
            reply = self.ask(task, sample, messages,
                             {"kind": "generate" if step == 0 else "fix", "phase": phase,
                              "agent": agent, "attempt": step,
                              "seeded": branch != "reference"})
            if reply is None:
                break
            self.store.write(where.relative_to(self.store.dir) / "response.md", reply)
            messages.append(("assistant", reply))
            code = extract_code(reply)
            if code is None:
                self.store.emit({"type": "format_error", "step": sample, "task": task.id})
                messages.append(("user", self.templates.render("format_error")))
                continue
            path = self.store.write(where.relative_to(self.store.dir) / "candidate.py", code)
            result = self.evaluate(task, code, path, sample)
            self.store.write(where.relative_to(self.store.dir) / "eval.json",
                             result.model_dump_json(indent=2))
            last = Candidate(task.id, phase, agent, step, branch, path, result)
            self.record(task).add(last)
            if last.correct:
                break
            messages.append(("user", self.render("fix", task, code=code,
                                                 feedback=self.feedback(result))))
        return last

    def run_chains(self, jobs: list[Callable[[], Any]]) -> None:
        """Run chains concurrently and wait for all of them (a per-task phase boundary)."""
        threads = [threading.Thread(target=job, daemon=True) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def split_samples(total: int, seeds: int) -> list[int]:
    """``total`` samples over ``seeds`` seeds, the first ones getting the remainder
    (10 over 4 -> 3, 3, 2, 2)."""
    base, extra = divmod(total, seeds)
    return [base + (1 if i < extra else 0) for i in range(seeds)]


def task_summary(ctx: SearchContext, task: Task) -> dict[str, Any]:
    record = ctx.record(task)
    best = record.correct()
    baselines = {mode: stats.median_ms for mode, stats in record.baselines.items()}
    if best and best[0].result.baseline_ms and ctx.config.mode in baselines:
        # the baseline the best candidate was compared with (re-timed when flagged)
        baselines[ctx.config.mode] = best[0].result.baseline_ms
    summary: dict[str, Any] = {
        "candidates": len(record.candidates), "correct_candidates": len(best),
        "correct": bool(best), "baselines_ms": baselines,
        "best_solution": str(best[0].path.relative_to(ctx.store.dir)) if best else None,
        "best_runtime_ms": best[0].runtime_ms if best else None,
        # The evaluated mode's speedup is the candidate's own (re-measured when flagged).
        "speedup": {mode: (best[0].result.speedup if mode == ctx.config.mode else
                           ms / best[0].runtime_ms) if best else None
                    for mode, ms in baselines.items()},
        "flags": best[0].result.flags if best else [],
        "statuses": {},
        "phases": [],
    }
    for candidate in record.candidates:
        status = candidate.result.status.value
        summary["statuses"][status] = summary["statuses"].get(status, 0) + 1
    for phase in range(max((c.phase for c in record.candidates), default=-1) + 1):
        in_phase = record.correct(phase)
        summary["phases"].append({"phase": phase,
                                  "best_runtime_ms": in_phase[0].runtime_ms if in_phase else None,
                                  "correct": len(in_phase)})
    return summary
