"""The evaluator: runs a task kind's steps in isolated children and assembles the verdict.

The process that creates an :class:`Evaluator` becomes a warm parent: it imports torch once
and forks one child per inspection, baseline or candidate (see ``kbtool.isolation``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kbtool import plugins
from kbtool.baselines import BaselineCache, baseline_key
from kbtool.config import Config
from kbtool.environment import collect_env
from kbtool.errors import KbtoolError
from kbtool.isolation import Limits, Outcome, run_isolated
from kbtool.problem import apply_sizes
from kbtool.result import EvalResult, Status, TimingStats
from kbtool.task import Task, TaskKind, TaskRefused
from kbtool.timing import Timer


def resolve_device(device: str) -> str:
    # NVML-based check: asking whether CUDA exists must not initialise it in the parent.
    os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")
    import torch

    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise KbtoolError("--device cuda: no CUDA device is visible to PyTorch here "
                          f"(torch {torch.__version__})")
    return device


def pick_timer(name: str | None, device: str) -> Timer:
    timers: dict[str, Timer] = plugins.collect("register_timers")
    if name is None:
        name = plugins.pm.hook.default_timer(device=device)
        if name is None:
            raise KbtoolError(f"no timer is registered for device {device!r}")
    if name not in timers:
        raise KbtoolError(f"unknown timer {name!r} (timers: {', '.join(sorted(timers))})")
    reason = timers[name].available(device)
    if reason:
        raise KbtoolError(reason)
    return timers[name]


class Evaluator:
    def __init__(self, config: Config) -> None:
        device = resolve_device(config.device)
        self.config = config.model_copy(update={"device": device})
        self.timer = pick_timer(config.timer, device)
        self.kinds: dict[str, TaskKind] = plugins.collect("register_task_kinds")
        self.cache = BaselineCache(config.cache_dir / "baselines") if config.baseline_cache else None
        self.limits = Limits(timeout_s=config.timeout_s, memory_mb=config.memory_limit_mb,
                             output_tail_chars=config.output_tail_chars,
                             address_space_limit=device == "cpu")
        self._inspected: dict[tuple[str, str], dict[str, Any]] = {}
        outcome = run_isolated(lambda _: collect_env(device), self.limits)
        if outcome.value is None:
            raise KbtoolError(f"could not start an evaluation process on {device}: "
                              f"{_failure_text(outcome)}")
        self.env: dict[str, Any] = {**outcome.value, "timer": self.timer.name}

    def _kind(self, task: Task) -> TaskKind:
        if task.kind not in self.kinds:
            raise KbtoolError(f"task {task.id} is of kind {task.kind!r}, which no plugin checks")
        return self.kinds[task.kind]

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]:
        """Sizes, dtype and memory need of a task; KbtoolError if it cannot run here."""
        config = config or self.config
        key = (task.id, repr(sorted(config.sizes.items())))
        if key not in self._inspected:
            kind = self._kind(task)

            def run(_: Any) -> dict[str, Any]:
                try:
                    return kind.inspect(task, config)
                except TaskRefused as exc:
                    return {"refused": str(exc)}

            outcome = run_isolated(run, self.limits)
            if outcome.value is None:
                raise KbtoolError(f"task {task.id} could not be loaded: {_failure_text(outcome)}")
            if "refused" in outcome.value:
                raise KbtoolError(outcome.value["refused"])
            self._inspected[key] = outcome.value
        return self._inspected[key]

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats:
        """The reference's timing under ``mode`` ("eager" or "compile"), cached."""
        config = config or self.config
        kind = self._kind(task)
        self.inspect(task, config)
        key = None
        if self.cache is not None and task.path is not None:
            source = apply_sizes(task.path.read_text(), config.sizes)
            key = baseline_key(source, mode, config.compile_mode, self.timer.name, self.env)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        outcome = run_isolated(
            lambda report: kind.baseline(task, config, mode, self.timer, report), self.limits)
        if outcome.value is None:
            raise KbtoolError(f"the reference of {task.id} failed under mode={mode}: "
                              f"{_failure_text(outcome)}")
        stats = TimingStats.model_validate(outcome.value["timing"])
        if key is not None and self.cache is not None:
            self.cache.put(key, stats)
        return stats

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        config = config or self.config
        if not solution.is_file():
            raise KbtoolError(f"solution file not found: {solution}")
        kind = self._kind(task)
        info = self.inspect(task, config)
        base = self.baseline(task, config.mode, config)
        outcome = run_isolated(
            lambda report: kind.check(task, solution, config, self.timer, report), self.limits)
        fields: dict[str, Any] = dict(outcome.value or {})
        if outcome.value is None:
            crashed_in = outcome.stage or "load"
            fields["status"] = (Status.timeout if outcome.timed_out else
                                Status.compile_error if crashed_in == "load" else
                                Status.runtime_error)
            fields["error"] = _failure_text(outcome)
        elif fields.get("error") and outcome.output:
            fields["error"] += f"\n--- candidate output (tail) ---\n{outcome.output}"
        result = EvalResult(
            task=task.id, solution=str(solution), device=config.device, mode=config.mode,
            timer=self.timer.name, baseline=base, baseline_ms=base.median_ms,
            stage_s=outcome.stage_s, sizes=info.get("sizes", {}), env=self.env, **fields)
        if result.timing is not None:
            result.runtime_ms = result.timing.median_ms
        if result.status == Status.ok and result.runtime_ms:
            result.speedup = base.median_ms / result.runtime_ms
        return result


def _failure_text(outcome: Outcome) -> str:
    """Why a child gave no result: the escaped exception or how it died, plus its output."""
    text = outcome.error or f"the evaluation process {outcome.describe_exit()}"
    if outcome.stage:
        text += f" (during {outcome.stage})"
    if outcome.output:
        text += f"\n--- output (tail) ---\n{outcome.output}"
    return text
