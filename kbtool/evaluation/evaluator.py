"""The evaluator: runs a task kind's steps in isolated children and assembles the verdict.

Candidate code never runs in the caller's process: every inspection, baseline and check is
a child forked from a warm zygote process (``kbtool.sandbox.zygote``) that imported torch once.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from kbtool_plugins.kernelbench.problem import apply_sizes

from kbtool.config.settings import Config
from kbtool.errors import KbtoolError
from kbtool.evaluation.baselines import BaselineCache, baseline_key
from kbtool.evaluation.result import EvalResult, Status, TimingStats
from kbtool.plugin import manager as plugins
from kbtool.sandbox import devicelock
from kbtool.sandbox.isolation import Limits, Outcome
from kbtool.sandbox.namespaces import SandboxPolicy
from kbtool.sandbox.zygote import Request, Zygote
from kbtool.task.model import Task
from kbtool.timing.base import Timer


def pick_timer(name: str | None, device: str) -> Timer:
    timers: dict[str, Timer] = plugins.collect("register_timers")
    if name is None:
        name = plugins.pm.hook.default_timer(device=device)
        if name is None:
            raise KbtoolError(f"no timer is registered for device {device!r}")
    if name not in timers:
        raise KbtoolError(f"unknown timer {name!r} (timers: {', '.join(sorted(timers))})")
    if timers[name].name != name:
        raise KbtoolError(f"timer registered as {name!r} calls itself {timers[name].name!r}; "
                          "the plugin must use one name")
    reason = timers[name].available(device)
    if reason:
        raise KbtoolError(reason)
    return timers[name]


class Evaluator:
    def __init__(self, config: Config) -> None:
        self.zygote = Zygote()
        device = self.zygote.call(Request("device", Limits(), {"device": config.device}))
        # CUDA reserves vast virtual ranges: there the RSS watch is the only memory limit.
        self.limits = Limits(timeout_s=config.timeout_s, memory_mb=config.memory_limit_mb,
                             output_tail_chars=config.output_tail_chars,
                             address_space_limit=device == "cpu",
                             sandbox=SandboxPolicy(config.sandbox, config.max_processes))
        self.config = config.model_copy(update={"device": device})
        devicelock.prepare(self.config)
        self.timer = pick_timer(config.timer, device)
        self.kinds = plugins.collect("register_task_kinds")
        self.cache = BaselineCache(config.cache_dir / "baselines") if config.baseline_cache else None
        self._inspected: dict[tuple[str, str], dict[str, Any]] = {}
        outcome = self._run("env", device=device)
        if outcome.value is None:
            raise KbtoolError(f"could not start an evaluation process on {device}: "
                              f"{failure_text(outcome)}")
        self.env: dict[str, Any] = {**outcome.value, "timer": self.timer.name,
                                    "sandbox": outcome.sandbox}
        if any("incomplete" in item for item in outcome.sandbox):
            print(f"kbtool: warning: candidates run without full isolation: {outcome.sandbox}",
                  file=sys.stderr)
            policy = replace(self.limits.sandbox, namespaces=False)
            self.limits = replace(self.limits, sandbox=policy)

    def close(self) -> None:
        self.zygote.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: str, **kwargs: Any) -> Outcome:
        return self.zygote.call(Request(op, self.limits, kwargs))

    def _check_kind(self, task: Task) -> None:
        if task.kind not in self.kinds:
            raise KbtoolError(f"task {task.id} is of kind {task.kind!r}, which no plugin checks")

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]:
        """Sizes, dtype and memory need of a task; KbtoolError if it cannot run here."""
        config = config or self.config
        self._check_kind(task)
        key = (task.id, repr(sorted(config.sizes.items())))
        if key not in self._inspected:
            outcome = self._run("inspect", task=task, config=config)
            if outcome.value is None:
                raise KbtoolError(f"task {task.id} could not be loaded: {failure_text(outcome)}")
            if "refused" in outcome.value:
                raise KbtoolError(outcome.value["refused"])
            self._inspected[key] = outcome.value
        return self._inspected[key]

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats:
        """The reference's timing under ``mode`` ("eager" or "compile"), cached."""
        config = config or self.config
        self.inspect(task, config)
        key = None
        if self.cache is not None and task.path is not None:
            source = apply_sizes(task.path.read_text(), config.sizes)
            key = baseline_key(source, mode, config.compile_mode, self.timer.name, self.env)
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        outcome = self._run("baseline", task=task, config=config, mode=mode, timer=self.timer.name)
        if outcome.value is None:
            raise KbtoolError(f"the reference of {task.id} failed under mode={mode}: "
                              f"{failure_text(outcome)}")
        stats = TimingStats.model_validate(outcome.value["timing"])
        # Only a measurement that converged is worth reusing: one taken while the machine
        # was busy would inflate every later speedup.
        if key is not None and self.cache is not None and stats.stop_reason == "converged":
            self.cache.put(key, stats)
        return stats

    def baseline_result(self, task: Task, mode: str, config: Config | None = None) -> EvalResult:
        """The reference timed as if it were a candidate (batch ``--solutions baseline``)."""
        config = config or self.config
        stats = self.baseline(task, mode, config)
        return EvalResult(task=task.id, solution="baseline", device=config.device, mode=mode,
                          timer=self.timer.name, status=Status.ok, correct=True,
                          runtime_ms=stats.median_ms, baseline_ms=stats.median_ms, speedup=1.0,
                          timing=stats, baseline=stats, env=self.env)

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        config = config or self.config
        if not solution.is_file():
            raise KbtoolError(f"solution file not found: {solution}")
        info = self.inspect(task, config)
        base = self.baseline(task, config.mode, config)
        outcome = self._run("check", task=task, solution=str(solution.resolve()), config=config,
                            timer=self.timer.name)
        fields: dict[str, Any] = dict(outcome.value or {})
        if outcome.value is None:
            crashed_in = outcome.stage or "load"
            fields["status"] = (Status.timeout if outcome.timed_out else
                                Status.compile_error if crashed_in == "load" else
                                Status.runtime_error)
            fields["error"] = failure_text(outcome)
        elif fields.get("error") and outcome.output:
            fields["error"] += f"\n--- candidate output (tail) ---\n{outcome.output}"
        result = EvalResult(
            task=task.id, solution=str(solution), device=config.device, mode=config.mode,
            timer=self.timer.name, baseline=base, baseline_ms=base.median_ms,
            stage_s=outcome.stage_s, sizes=info.get("sizes", {}), env=self.env,
            sandbox=outcome.sandbox, **fields)
        if not any(item.startswith("no network") for item in outcome.sandbox):
            result.flags.append("unsandboxed")
            result.findings.append(f"unsandboxed: {', '.join(outcome.sandbox)}")
        if result.timing is not None:
            result.runtime_ms = result.timing.median_ms
        if result.status == Status.ok and result.runtime_ms:
            result.speedup = base.median_ms / result.runtime_ms
            if result.speedup > config.speedup_flag_threshold:
                self._remeasure(task, solution, config, result)
        return result

    def _remeasure(self, task: Task, solution: Path, config: Config, result: EvalResult) -> None:
        """A speedup this large is a red flag: time both again, alternately, in one process,
        and report those numbers."""
        first = result.speedup or 0.0
        threshold = config.speedup_flag_threshold
        outcome = self._run("side_by_side", task=task, solution=str(solution.resolve()),
                            config=config, timer=self.timer.name)
        if outcome.value is None:
            result.flags.append("large_speedup")
            result.findings.append(f"large_speedup: {first:.1f}x is above {threshold:g}x; the "
                                   f"re-measurement failed: {failure_text(outcome)[:500]}")
            return
        baseline_ms, runtime_ms = outcome.value["baseline_ms"], outcome.value["runtime_ms"]
        result.remeasured = {"baseline_ms": baseline_ms, "runtime_ms": runtime_ms,
                             "speedup": baseline_ms / runtime_ms, "first_speedup": first}
        result.baseline_ms, result.runtime_ms = baseline_ms, runtime_ms
        result.speedup = baseline_ms / runtime_ms
        result.flags.append("remeasured")
        result.findings.append(f"remeasured: {first:.1f}x at first, {result.speedup:.2f}x timed "
                               "side by side with the reference")
        if result.speedup > threshold:  # it holds up: still worth a human look
            result.flags.append("large_speedup")
            result.findings.append(f"large_speedup: {result.speedup:.1f}x is above {threshold:g}x")


def failure_text(outcome: Outcome) -> str:
    """Why a child gave no result: the escaped exception or how it died, plus its output."""
    text = outcome.error or f"the evaluation process {outcome.describe_exit()}"
    if outcome.stage:
        text += f" (during {outcome.stage})"
    if outcome.output:
        text += f"\n--- output (tail) ---\n{outcome.output}"
    return text
