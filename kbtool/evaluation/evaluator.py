"""The evaluator: runs a task kind's steps in isolated children and assembles the verdict.

Candidate code never runs in the caller's process: every inspection, baseline and check is
a child forked from a warm zygote process (``kbtool.sandbox.zygote``) that imported the
task kinds' heavy modules (torch) once.  Nothing here knows a particular kind: the kind
says what its baselines are, checks the candidate, and names the fields it adds.
"""

from __future__ import annotations

import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kbtool.config import Config
from kbtool.errors import KbtoolError, RunError, UsageError
from kbtool.evaluation.baselines import BaselineCache, baseline_key
from kbtool.evaluation.result import BaselineSpeedup, EvalResult, Status, TimingStats
from kbtool.plugin import manager, registry
from kbtool.sandbox import devicelock
from kbtool.sandbox.isolation import Limits, Outcome
from kbtool.sandbox.namespaces import SandboxPolicy
from kbtool.sandbox.zygote import Request, Zygote
from kbtool.task.catalog import kind_of
from kbtool.task.kind import TaskKind
from kbtool.task.model import Task, TaskAudit
from kbtool.timing.base import Timer
from kbtool.timing.noise import MachineState, cpu_count, machine_state

log = logging.getLogger(__name__)

# What a check may return besides its kind's details (the rest is the evaluator's to set).
# A kind that times its reference side by side (paired: kernelbench, perf) reports
# runtime_ms, baseline_ms, speedup and its interval itself, and ``speedups`` against every
# baseline of ``config.baselines`` it timed in the same rounds; for the baselines it did not
# time the evaluator derives them from the cached baseline, and says so (``cached``).
_CHECK_FIELDS = {"status", "correct", "error", "flags", "findings", "timing", "baseline",
                 "runtime_ms", "baseline_ms", "speedup", "speedup_ci", "significant",
                 "speedups", "noisy", "noise", "correctness_trials"}
# The evaluator's own: whatever a check or a kind's details say, these are set here.
_OWN_FIELDS = {"schema_version", "task", "kind", "solution", "device", "mode", "timer",
               "stage_s", "env", "sandbox", "remeasured", "speedup_from"}


def pick_timer(name: str | None, device: str) -> Timer:
    if name is None:
        name = manager.load_plugins().hook.default_timer(device=device)
        if name is None:
            raise UsageError(f"no timer is registered for device {device!r}")
    timer = registry.TIMERS.get(name)
    if timer.name != name:
        raise UsageError(f"timer registered as {name!r} calls itself {timer.name!r}; "
                         "the plugin must use one name")
    reason = timer.available(device)
    if reason:
        raise UsageError(reason)
    return timer


def warm_up(evaluators: list[Evaluator]) -> dict[str, Any]:
    """The first evaluator's environment, once every evaluator's warm process has imported
    every kind's preload, side by side: a pool that serves whatever comes (a search, a
    worker) pays for it up front, not in its first evaluations."""
    with ThreadPoolExecutor(len(evaluators)) as warming:
        envs = list(warming.map(lambda evaluator: evaluator.env, evaluators))
    return envs[0]


class Evaluator:
    """Evaluates on this machine, one step at a time (a pool of these runs side by side)."""

    def __init__(self, config: Config) -> None:
        self.zygote = Zygote(config.cache_dir / "scratch")
        device = self.zygote.device(config.device)
        # CUDA reserves vast virtual ranges: there the RSS watch is the only memory limit.
        self.limits = Limits(timeout_s=config.timeout_s, memory_mb=config.memory_limit_mb,
                             output_tail_chars=config.output_tail_chars,
                             address_space_limit=device == "cpu",
                             sandbox=SandboxPolicy(config.sandbox, config.max_processes))
        self.config = config.model_copy(update={"device": device})
        devicelock.prepare(self.config)
        self.timer = pick_timer(config.timer, device)
        self.cache = BaselineCache(config.cache_dir / "baselines") if config.baseline_cache else None
        self._inspected: dict[tuple[str, str], dict[str, Any]] = {}
        # Baselines this evaluator timed, by cache key, kept while it lives even where the
        # cache would not keep them (noisy): the baselines a run times at a task's start and
        # the cached speedups of its candidates then rest on one measurement, not on many.
        self._timed: dict[str, TimingStats] = {}
        # The environment is collected by a child of the zygote once it has imported what
        # the kinds preload: for the first task's kind when a task comes first (a command
        # that checks repository items never imports torch), else for every kind.
        self._env: dict[str, Any] | None = None
        self._env_kinds: set[str] | None = set()  # None: every kind's preload is in
        self._env_lock = threading.Lock()

    @property
    def env(self) -> dict[str, Any]:
        """What evaluations run on: device, versions, timer, sandbox."""
        with self._env_lock:
            if self._env is None or self._env_kinds is not None:
                self._collect_env(None)
            assert self._env is not None
            return self._env

    def _env_of(self, task: Task) -> dict[str, Any]:
        """The environment ``task`` is evaluated in: collected (again) once the zygote has
        imported what the task's kind preloads."""
        with self._env_lock:
            kinds = self._env_kinds
            if kinds is not None and task.kind not in kinds:
                if self._env is None or kind_of(task).preload:
                    self._collect_env([task.kind])
                kinds.add(task.kind)
            assert self._env is not None
            return self._env

    def _collect_env(self, kinds: list[str] | None) -> None:
        device = self.config.device
        outcome = self._run("env", device=device, kinds=kinds)
        if outcome.value is None:
            raise RunError(f"could not start an evaluation process on {device}: "
                           f"{failure_text(outcome)}")
        self._env = {**outcome.value, "timer": self.timer.name, "sandbox": outcome.sandbox}
        if kinds is None:
            self._env_kinds = None
        if self.limits.sandbox.namespaces and any("incomplete" in item
                                                  for item in outcome.sandbox):
            log.warning("candidates run without full isolation: %s", outcome.sandbox)
            policy = replace(self.limits.sandbox, namespaces=False)
            self.limits = replace(self.limits, sandbox=policy)

    def close(self) -> None:
        self.zygote.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, op: str, **kwargs: Any) -> Outcome:
        if "task" in kwargs:
            self._env_of(kwargs["task"])
        return self.zygote.call(Request(op, self.limits, kwargs))

    def _settings(self, config: Config | None) -> Config:
        """``config`` (or the evaluator's own), on the device this evaluator resolved."""
        if config is None:
            return self.config
        if config.device == self.config.device:
            return config
        return config.model_copy(update={"device": self.config.device})

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]:
        """What the task kind tells about the task here (sizes, memory need, ...); a one-line
        ``UsageError`` when it cannot run here."""
        config = self._settings(config)
        kind = kind_of(task)
        # The whole task: two problem files may share a name (file/problem).
        key = (task.model_dump_json(), json.dumps(config.sections, sort_keys=True, default=str))
        if key not in self._inspected:
            kind.prepare(task, config)  # downloads, environments: here, not in the sandbox
            outcome = self._run("inspect", task=task, config=config)
            if outcome.value is None:
                log.debug("inspecting %s failed:\n%s", task.id, failure_text(outcome))
                raise UsageError(f"task {task.id} could not be loaded: "
                                 f"{failure_line(outcome)}")
            if "refused" in outcome.value:
                raise UsageError(outcome.value["refused"])
            self._inspected[key] = outcome.value
        return self._inspected[key]

    def _for_task(self, task: Task, config: Config) -> tuple[dict[str, Any], Config]:
        """The task's inspection, and the settings to evaluate it with: what the kind chose
        while inspecting it here (``settings``: e.g. sizes that fit) over ``config``'s."""
        info = self.inspect(task, config)
        chosen = info.get("settings")
        if isinstance(chosen, dict) and chosen:
            sections = {name: {**config.sections.get(name, {}), **values}
                        for name, values in chosen.items() if isinstance(values, dict)}
            config = config.model_copy(update={"sections": {**config.sections, **sections}})
        return info, config

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats:
        """The reference's timing under the baseline ``mode``, cached when it converged."""
        kind = kind_of(task)
        _, config = self._for_task(task, self._settings(config))
        key = None
        task_key = kind.baseline_key(task, config, mode) if self.cache is not None else None
        if self.cache is not None and task_key is not None:
            key = baseline_key(task_key, task.kind, self.timer.name, self._env_of(task))
            cached = self._timed.get(key) or self.cache.get(key)
            if cached is not None:
                return cached
        before = machine_state()
        outcome = self._run("baseline", task=task, config=config, mode=mode, timer=self.timer.name)
        if outcome.value is None:
            log.debug("baseline %s of %s failed:\n%s", mode, task.id, failure_text(outcome))
            raise UsageError(f"the reference of {task.id} failed under mode={mode}: "
                             f"{failure_line(outcome)}")
        try:
            stats = TimingStats.model_validate(outcome.value["timing"])
        except (KeyError, TypeError, ValidationError) as exc:
            raise RunError(f"task kind {task.kind!r} returned a malformed baseline: {exc}") \
                from None
        # Only a measurement that converged on a machine that was not busy is worth reusing:
        # one taken under load would skew every later figure that uses it.
        if key is not None and self.cache is not None:
            self._timed[key] = stats
            if stats.stop_reason == "converged" and not busy(before, machine_state()):
                self.cache.put(key, stats)
        return stats

    def baseline_result(self, task: Task, mode: str | None = None,
                        config: Config | None = None) -> EvalResult:
        """The reference timed as if it were a candidate (batch ``--solutions baseline``)."""
        kind = kind_of(task)
        info, config = self._for_task(task, self._settings(config))
        mode = mode or kind.resolve_mode(config)
        if mode is None:
            raise UsageError(f"tasks of kind {task.kind!r} have no baseline to time")
        stats = self.baseline(task, mode, config)
        # No correctness check ran: ``correct`` is unknown, not true.
        return EvalResult(task=task.id, kind=task.kind, solution="baseline",
                          device=config.device, mode=mode, timer=self.timer.name,
                          status=Status.ok, correct=None, runtime_ms=stats.median_ms,
                          baseline_ms=stats.median_ms, speedup=1.0, speedup_ci=[1.0, 1.0],
                          significant=False, timing=stats, baseline=stats, env=self._env_of(task),
                          **default_details(kind, info))

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        config = self._settings(config)
        if not solution.is_file():
            raise UsageError(f"solution file not found: {solution}")
        kind = kind_of(task)
        info, config = self._for_task(task, config)
        mode = kind.resolve_mode(config)
        # The check (a paired judge) times the reference under each of these, in its rounds.
        baselines = kind.resolve_baselines(config)
        config = config.model_copy(update={"baselines": baselines})
        outcome = self._run("check", task=task, solution=str(solution.resolve()), config=config,
                            timer=self.timer.name)
        # Where the check never runs candidate code, its failure is kbtool's, not a verdict.
        blame = Status.runtime_error if kind.check_runs_candidate else Status.internal_error
        fields: dict[str, Any] = {}
        details = default_details(kind, info)
        if outcome.value is None:
            if outcome.timed_out:
                fields["status"] = Status.timeout
            elif kind.check_runs_candidate or outcome.memory_exceeded:
                fields["status"] = Status.compile_error if (outcome.stage or "load") == "load" \
                    else Status.runtime_error
            else:
                fields["status"] = Status.internal_error
            fields["error"] = failure_text(outcome)
        elif isinstance(outcome.value, dict) and isinstance(outcome.value.get("refused"), str):
            # The task itself is broken (its reference failed): never the candidate's verdict.
            raise UsageError(f"task {task.id} is broken: {outcome.value['refused']} (see "
                             f"`kbtool tasks check {task.id}`)")
        else:
            fields, checked = split_check(kind, task, outcome.value, blame)
            details.update(checked)
            if fields.get("error") and outcome.output:
                fields["error"] = f"{fields['error']}\n--- candidate output (tail) ---\n" \
                                  f"{outcome.output}"
        own = {"task": task.id, "kind": task.kind, "solution": str(solution),
               "device": config.device, "mode": mode, "timer": self.timer.name,
               "stage_s": outcome.stage_s, "env": self._env_of(task),
               "sandbox": outcome.sandbox}
        result = assemble(fields, details, own, blame)
        if result.status == Status.internal_error:
            log.debug("kbtool failed while judging %s:\n%s", task.id, result.error)
        if not any(item.startswith("no network") for item in outcome.sandbox):
            flag(result, "unsandboxed", ", ".join(outcome.sandbox))
        if result.status != Status.ok:
            result.speedup = result.speedup_ci = result.significant = None
            result.speedups = {}
        elif result.speedup is None and mode in result.speedups:
            _set_speedup(result, result.speedups[mode])
        elif result.speedup is not None:
            result.speedup_from = "paired"
        elif mode is not None and result.timing is not None:
            self._against_cached(task, mode, config, result)
        for what, stats in (("runtime", result.timing), ("baseline", result.baseline)):
            if stats is not None and stats.stop_reason == "few_trials":
                flag(result, "few_trials", f"the {what} rests on {stats.trials} timed trials "
                     f"(min_trials={config.min_trials}): one call takes too long for more")
        if result.noisy:
            reasons = (result.noise or {}).get("reasons") or ["the interval did not narrow"]
            flag(result, "noisy", "; ".join(reasons))
        if result.speedup is not None and result.speedup > config.speedup_flag_threshold:
            if result.speedup_from == "paired":  # already timed side by side: it holds
                flag(result, "large_speedup", f"{result.speedup:.1f}x is above "
                     f"{config.speedup_flag_threshold:g}x, timed side by side with the reference")
            else:
                self._remeasure(task, solution, config, result)
        if result.status == Status.ok:
            self._all_baselines(task, mode, baselines, config, result)
        return result

    def _all_baselines(self, task: Task, mode: str | None, baselines: list[str],
                       config: Config, result: EvalResult) -> None:
        """``speedups``: the one under ``mode`` as the result states it, and against every
        other baseline the check did not time in its rounds, the cached baseline (``cached``,
        with that baseline's own interval in its interval)."""
        if mode is not None and result.speedup is not None:
            result.speedups[mode] = BaselineSpeedup(
                baseline_ms=result.baseline_ms, speedup=result.speedup,
                speedup_ci=result.speedup_ci, significant=result.significant,
                speedup_from="cached" if result.speedup_from == "cached" else "paired")
        if result.timing is None:
            return
        filled = []
        for name in [b for b in baselines if b not in result.speedups]:
            try:
                base = self.baseline(task, name, config)
            except KbtoolError as exc:
                flag(result, "cached_baseline", f"no speedup against {name}: {exc}")
                continue
            result.speedups[name] = BaselineSpeedup.cached(base, result.timing)
            filled.append(name)
        if filled:
            flag(result, "cached_baseline", f"against {', '.join(filled)}: a baseline timed "
                 f"earlier, not alongside the candidate (task kind {task.kind!r} did not time "
                 "it in its rounds)")

    def audit(self, task: Task, config: Config | None = None) -> TaskAudit:
        """The task itself checked for its author (``kbtool tasks check``): it must load
        here (``inspect``), and then pass its kind's ``audit``."""
        config = self._settings(config)
        try:
            _, config = self._for_task(task, config)
        except UsageError as exc:
            return TaskAudit(task=task.id, problems=[str(exc)])
        outcome = self._run("audit", task=task, config=config, timer=self.timer.name)
        if outcome.value is None:
            log.debug("auditing %s failed:\n%s", task.id, failure_text(outcome))
            return TaskAudit(task=task.id, problems=[f"the check of the task itself failed: "
                                                     f"{failure_line(outcome)}"])
        try:
            return TaskAudit.model_validate({**outcome.value, "task": task.id})
        except ValidationError as exc:
            raise RunError(f"task kind {task.kind!r} returned a malformed audit: "
                           f"{str(exc).splitlines()[0]}") from None

    def _against_cached(self, task: Task, mode: str, config: Config, result: EvalResult) -> None:
        """The speedup against the cached baseline, with the interval its two medians' give
        (asked for with speedup_from=cached, or all a kind that does not pair allows)."""
        assert result.timing is not None
        base = self.baseline(task, mode, config)
        result.baseline = base
        result.runtime_ms = result.timing.median_ms
        _set_speedup(result, BaselineSpeedup.cached(base, result.timing))
        why = "asked for (speedup_from=cached)" if config.speedup_from == "cached" else \
            f"task kind {task.kind!r} does not time its reference side by side"
        flag(result, "cached_baseline", f"the speedup is against a baseline timed earlier, "
             f"not alongside the candidate: {why}")

    def _remeasure(self, task: Task, solution: Path, config: Config, result: EvalResult) -> None:
        """A speedup this large is a red flag: time both again, alternately, in one process,
        and report those numbers."""
        first = result.speedup or 0.0
        threshold = config.speedup_flag_threshold
        outcome = self._run("side_by_side", task=task, solution=str(solution.resolve()),
                            config=config, timer=self.timer.name)
        value = outcome.value
        if value is None:
            why = (f"the re-measurement failed: {failure_text(outcome)[:500]}"
                   if outcome.error or outcome.exit_code or outcome.signal or outcome.timed_out
                   else f"task kind {task.kind!r} cannot re-measure side by side")
            result.flags.append("large_speedup")
            result.findings.append(f"large_speedup: {first:.1f}x is above {threshold:g}x; {why}")
            return
        try:
            baseline_ms, runtime_ms = float(value["baseline_ms"]), float(value["runtime_ms"])
        except (KeyError, TypeError, ValueError):
            result.flags.append("large_speedup")
            result.findings.append(f"large_speedup: {first:.1f}x is above {threshold:g}x; the "
                                   "re-measurement returned no baseline_ms and runtime_ms")
            return
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


def _set_speedup(result: EvalResult, against: BaselineSpeedup) -> None:
    """The result's own speedup (under ``mode``) from one baseline's figures."""
    result.baseline_ms, result.speedup = against.baseline_ms, against.speedup
    result.speedup_ci, result.significant = against.speedup_ci, against.significant
    result.speedup_from = against.speedup_from


def flag(result: EvalResult, name: str, finding: str) -> None:
    if name not in result.flags:
        result.flags.append(name)
    result.findings.append(f"{name}: {finding}")


def busy(before: MachineState, after: MachineState) -> bool:
    """Whether the machine had more work than CPUs while something was timed."""
    loads = [s.load_1min for s in (before, after) if s.load_1min is not None]
    return bool(loads) and max(loads) > cpu_count()


def assemble(fields: dict[str, Any], details: dict[str, Any], own: dict[str, Any],
             blame: Status = Status.runtime_error) -> EvalResult:
    """The result from a check's fields and the kind's details; the evaluator's own fields
    win over both, and a check whose fields do not make a result is ``blame`` (the
    candidate's ``runtime_error``, or kbtool's ``internal_error`` where the check is a judge)."""
    data = {**{k: v for k, v in details.items() if k not in EvalResult.model_fields},
            **{k: v for k, v in fields.items() if k not in _OWN_FIELDS}, **own}
    try:
        return EvalResult.model_validate(data)
    except (ValidationError, TypeError, ValueError) as exc:
        return EvalResult.model_validate({
            **own, "status": blame,
            "error": f"the check of kind {own['kind']!r} returned a malformed result: "
                     f"{str(exc).splitlines()[0]}"})


def default_details(kind: TaskKind, info: dict[str, Any]) -> dict[str, Any]:
    """The kind's details before its check has run: defaults, and what ``inspect`` said of
    them (the sizes of a KernelBench problem, say)."""
    own = kind.details_model.model_fields
    try:
        found = kind.details_model.model_validate(
            {k: v for k, v in info.items() if k in own}).model_dump(mode="json")
    except ValidationError:
        found = kind.details_model().model_dump(mode="json")
    # A field the core result has (perf's speedup_ci) is the core's.
    return {k: v for k, v in found.items() if k not in EvalResult.model_fields}


def split_check(kind: TaskKind, task: Task, value: Any, blame: Status = Status.runtime_error
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """A check's return value as (core result fields, the kind's details, validated); a
    malformed one is ``blame`` (see ``assemble``)."""
    if not isinstance(value, dict):
        return {"status": blame,
                "error": f"the check of kind {task.kind!r} returned a "
                         f"{type(value).__name__}, not a mapping"}, {}
    fields = {k: v for k, v in value.items() if k in _CHECK_FIELDS}
    extra = {k: v for k, v in value.items()
             if k not in _CHECK_FIELDS and k not in EvalResult.model_fields}
    own = kind.details_model.model_fields
    stray = sorted(k for k in extra if k not in own)
    if stray:
        log.warning("task kind %r returned fields it does not declare (%s); dropped",
                    task.kind, ", ".join(stray))
    try:
        details = kind.details_model.model_validate(
            {k: v for k, v in extra.items() if k in own}).model_dump(mode="json",
                                                                    exclude_unset=True)
    except ValidationError as exc:
        return {"status": blame,
                "error": f"the check of kind {task.kind!r} returned malformed details: "
                         f"{str(exc).splitlines()[0]}"}, {}
    return fields, details


def failure_text(outcome: Outcome) -> str:
    """Why a child gave no result: the escaped exception or how it died, plus its output."""
    text = outcome.error or f"the evaluation process {outcome.describe_exit()}"
    if outcome.stage:
        text += f" (during {outcome.stage})"
    if outcome.output:
        text += f"\n--- output (tail) ---\n{outcome.output}"
    return text


def failure_line(outcome: Outcome) -> str:
    """``failure_text`` in one line: the exception's last line (``--verbose`` shows all)."""
    if outcome.error:
        lines = [line for line in outcome.error.strip().splitlines() if line.strip()]
        text = lines[-1].strip() if lines else "an error"
    else:
        text = f"the evaluation process {outcome.describe_exit()}"
    return text + (f" (during {outcome.stage})" if outcome.stage else "")
