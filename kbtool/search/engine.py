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
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbtool.config import Config, eval_settings
from kbtool.errors import KbtoolError
from kbtool.evaluation.backend import EvalBackend
from kbtool.evaluation.result import EvalResult, Status, TimingStats
from kbtool.llm.client import BudgetExhausted, LLMClient
from kbtool.llm.model import ChatRequest, context_length_exceeded, split_model_name
from kbtool.plugin import registry
from kbtool.runs.events import Eval, FormatError, LLMFailed
from kbtool.runs.store import RunStore
from kbtool.runs.summary import Attempt, TaskSummary, against_each, interval, summarize_task
from kbtool.search.prompts import Templates
from kbtool.task.catalog import kind_of
from kbtool.task.kind import TaskKind
from kbtool.task.model import Task

Strategy = Callable[["SearchContext", Task], None]
# Makes a conversation shorter for a model whose context it overflowed; None: it cannot be.
Shorten = Callable[[list[tuple[str, str]]], list[tuple[str, str]] | None]


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

    def attempt(self, solution: str) -> Attempt:
        r = self.result
        return Attempt(phase=self.phase, status=r.status.value, runtime_ms=r.runtime_ms,
                       speedup=r.speedup, baseline_ms=r.baseline_ms, flags=tuple(r.flags),
                       solution=solution, speedup_ci=interval(r.speedup_ci),
                       speedup_from=r.speedup_from, speedups=against_each(r.speedups))


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


def make_provider(config: Config) -> tuple[str, str, Any]:
    provider_name, model = split_model_name(config.model_name, config.server_type)
    return provider_name, model, registry.PROVIDERS.get(provider_name)(config)


class SearchContext:
    """What a strategy may use.  Thread-safe."""

    def __init__(self, config: Config, store: RunStore, llm: LLMClient, provider: str,
                 model: str, pool: EvalBackend, device_description: str) -> None:
        self.config = config
        self.store = store
        self.llm = llm
        self.provider, self.model = provider, model
        self.pool = pool
        self.device_description = device_description
        self.records: dict[str, TaskRecord] = {}
        self._templates: dict[str, Templates] = {}
        self._lock = threading.Lock()
        self._eval_locks: dict[str, threading.Lock] = {}
        self._eval_fingerprint = json.dumps(eval_settings(config), sort_keys=True)

    # -- state ----------------------------------------------------------------------------
    @property
    def stopped(self) -> bool:
        """True once a budget is exhausted: strategies start nothing new."""
        return self.llm.exhausted is not None

    def record(self, task: Task) -> TaskRecord:
        with self._lock:
            return self.records.setdefault(task.id, TaskRecord())

    def kind(self, task: Task) -> TaskKind:
        return kind_of(task)

    def task_config(self, task: Task) -> Config:
        """The settings ``task`` is evaluated with (its kind keeps what applies to it)."""
        return self.kind(task).configure(task, self.config)

    # -- prompts ---------------------------------------------------------------------------
    def templates(self, task: Task) -> Templates:
        with self._lock:
            if task.kind not in self._templates:
                self._templates[task.kind] = Templates(self.kind(task), task.kind,
                                                       self.config.templates_dir)
            return self._templates[task.kind]

    def render(self, name: str, task: Task, **values: object) -> str:
        context = self.kind(task).prompt_context(task, self.task_config(task))
        return self.templates(task).render(name, **{
            **context, "device_description": self.device_description, **values})

    def feedback(self, result: EvalResult) -> str:
        """What a fix prompt tells the model about a failed candidate."""
        return self.kind_by_name(result.kind).feedback(result, self.config)

    def kind_by_name(self, name: str) -> TaskKind:
        return registry.TASK_KINDS.get(name)

    # -- LLM --------------------------------------------------------------------------------
    def ask(self, task: Task, sample: str, messages: list[tuple[str, str]],
            meta: dict[str, Any], shorten: Shorten | None = None) -> str | None:
        """The model's reply, or None when a budget is exhausted or the call failed.
        ``shorten``: when the prompt is too long for the model's context, ask again with
        ``shorten(messages)`` (e.g. without the oldest turn), until it returns None."""
        while True:
            request = ChatRequest(provider=self.provider, model=self.model,
                                  messages=(("system", self.render("system", task)),
                                            *messages),
                                  temperature=self.config.temperature,
                                  max_tokens=self.config.max_tokens, sample=sample,
                                  meta={"task": task.id, **meta})
            try:
                return self.llm.complete(request).text
            except BudgetExhausted:
                return None
            except Exception as exc:  # a call that failed for good ends this chain only
                shorter = shorten(messages) if shorten and context_length_exceeded(exc) else None
                if shorter is None:
                    self.store.emit(LLMFailed(sample=sample, error=str(exc)[:500]))
                    return None
                messages = shorter

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, task: Task, code: str, path: Path, sample: str) -> EvalResult:
        key = hashlib.sha256(f"{task.id}\n{self._eval_fingerprint}\n{code}".encode()) \
            .hexdigest()[:40]
        cached = self.store.layout.eval_record(key)
        with self._lock:
            key_lock = self._eval_locks.setdefault(key, threading.Lock())
        with key_lock:  # two chains with the same code: one evaluation
            if cached.exists():
                result = EvalResult.model_validate_json(cached.read_text())
            else:
                try:
                    result = self.pool.evaluate(task, path, self.task_config(task))
                except KbtoolError as exc:  # e.g. the evaluation process died: kbtool's
                    result = EvalResult(task=task.id, kind=task.kind, solution=str(path),
                                        device="?", mode=self.config.mode,
                                        status=Status.internal_error, error=str(exc))
                # kbtool's own failure is no verdict: a resumed run judges the candidate again.
                if result.status != Status.internal_error:
                    self.store.write(cached, result.model_dump_json())
        self.store.emit(Eval(sample=sample, task=task.id, status=result.status.value,
                             runtime_ms=result.runtime_ms, baseline_ms=result.baseline_ms,
                             speedup=result.speedup, speedup_ci=result.speedup_ci,
                             speedup_from=result.speedup_from,
                             speedups=result.speedups,
                             noisy=result.noisy, flags=result.flags,
                             path=self.store.layout.relative(path),
                             details=dict(result.model_extra or {}), env=result.env))
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
            where = self.store.layout.step_dir(task.id, phase, agent, step)
            sample = f"{task.id}/p{phase}/a{agent}/s{step}"
            self.store.write(where / "prompt.md", messages[-1][1])
            reply = self.ask(task, sample, messages,
                             {"kind": "generate" if step == 0 else "fix", "phase": phase,
                              "agent": agent, "attempt": step,
                              "seeded": branch != "reference"})
            if reply is None:
                break
            self.store.write(where / "response.md", reply)
            messages.append(("assistant", reply))
            kind = self.kind(task)
            code = kind.extract_candidate(reply)
            if code is None:
                self.store.emit(FormatError(sample=sample, task=task.id))
                messages.append(("user", self.render("format_error", task)))
                continue
            path = self.store.write(self.store.layout.candidate(where, kind.candidate_suffix),
                                    code)
            result = self.evaluate(task, code, path, sample)
            self.store.write(where / "eval.json", result.model_dump_json(indent=2))
            last = Candidate(task.id, phase, agent, step, branch, path, result)
            self.record(task).add(last)
            if last.correct or result.status == Status.internal_error:
                break  # kbtool failed, not the candidate: nothing to tell the model
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


def task_summary(ctx: SearchContext, task: Task) -> TaskSummary:
    """The task's summary by the one rule (``kbtool.runs.summary``)."""
    record = ctx.record(task)
    with record.lock:
        candidates = list(record.candidates)
    attempts = [c.attempt(ctx.store.layout.relative(c.path)) for c in candidates]
    baselines = {mode: stats.median_ms for mode, stats in record.baselines.items()}
    return summarize_task(attempts, baselines, ctx.kind(task).resolve_mode(ctx.config))
