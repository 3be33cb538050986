"""What ``kbtool monitor`` knows about a run: its event log, read incrementally, folded into
plain Python objects (no widgets here, so this can be tested and benchmarked alone).

``EventTail`` reads only the bytes added to ``events.jsonl`` since the last read (at most a
chunk at a time, so that a large log is shown as it is read) and keeps a partial last line
until its newline arrives, so a log that is being written, on this node or on another one
over NFS, is followed by polling alone.  ``RunState`` folds events into
per-task records: the tree of phases, agents and steps, candidates, the best candidate and
its speedups, LLM usage and evaluation counts.  It knows no task kind: runtimes, speedups
and baselines are whatever the events carry (none for a kind that does not time its
candidates), and a kind's own result fields ride in each step's ``details``.
``RunFollower`` ties the two together for a run directory, with a lock so that a polling
thread and the UI can share the state, and freezes what it folded for the cycle collector
(``gc.freeze``) every ``FREEZE_EVENTS`` events, so that Python's full collections, which
would walk the whole run, stay short.
"""

from __future__ import annotations

import bisect
import gc
import json
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kbtool.runs.layout import RunLayout
from kbtool.runs.summary import Against, Attempt, against_each, better, interval, speedup_against

TASK_STATUSES = ("pending", "running", "done", "skipped", "failed")
RECENT_S = 300.0  # the window of the "recent" evaluation rate

StepKey = tuple[int, int, int]


def parse_sample(sample: str) -> tuple[str, StepKey | None]:
    """``task/pP/aA/sS`` -> (task, (P, A, S)); ``task/ideas`` -> (task, None).  A task id
    may itself contain slashes (``builtin/1/2_ReLU/p0/a1/s2``).  No regex: this runs for
    most events, and splitting is several times faster."""
    head, _, s = sample.rpartition("/")
    if s[:1] == "s" and s[1:].isdigit():
        rest, _, a = head.rpartition("/")
        if a[:1] == "a" and a[1:].isdigit():
            task, _, p = rest.rpartition("/")
            if task and p[:1] == "p" and p[1:].isdigit():
                return task, (int(p[1:]), int(a[1:]), int(s[1:]))
    return head, None


class EventTail:
    """Incremental reader of an append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0          # bytes consumed, complete lines only
        self.partial = b""       # an incomplete last line, kept until its newline arrives
        self.bad_lines = 0       # complete lines that are not JSON (a torn line, repaired)
        self.restarted = False   # the file shrank (replaced): the caller must start over
        self.size = 0            # the file's size at the last read

    @property
    def behind(self) -> int:
        """Bytes that were in the file at the last read but are not read yet."""
        return max(0, self.size - self.offset - len(self.partial))

    def read(self, max_bytes: int | None = None) -> list[dict[str, Any]]:
        """The events of the complete lines written since the last call, from at most
        ``max_bytes`` more bytes (a line longer than that is completed by later calls)."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return []
        with handle:
            size = self.size = os.fstat(handle.fileno()).st_size
            if size < self.offset + len(self.partial):
                self.offset, self.partial, self.restarted = 0, b"", True
            start = self.offset + len(self.partial)
            if size == start:
                return []
            handle.seek(start)
            data = handle.read(size - start if max_bytes is None else
                               min(size - start, max_bytes))
        data = self.partial + data
        end = data.rfind(b"\n")
        if end < 0:
            self.partial = data
            return []
        self.partial = data[end + 1:]
        self.offset += end + 1
        return self._parse(data[:end])

    def _parse(self, block: bytes) -> list[dict[str, Any]]:
        lines = [line for line in block.split(b"\n") if line.strip()]
        if not lines:
            return []
        try:  # one parse for the whole block: about twice as fast as line by line
            events = json.loads(b"[" + b",".join(lines) + b"]")
            if all(isinstance(e, dict) for e in events):
                return events
        except ValueError:
            pass
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                self.bad_lines += 1
                continue
            if isinstance(event, dict):
                events.append(event)
            else:
                self.bad_lines += 1
        return events


@dataclass(slots=True)
class Step:
    """One try of a chain: a prompt, a reply, maybe a candidate and its evaluation."""

    phase: int
    agent: int
    step: int
    status: str = "waiting"      # evaluating, an eval status, format_error or llm_failed
    runtime_ms: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None  # against the run's evaluation mode (the candidate's own)
    speedup_ci: list[float] | None = None
    speedup_from: str | None = None
    speedups: dict[str, Any] = field(default_factory=dict)  # per baseline (EvalResult's)
    flags: list[str] = field(default_factory=list)
    path: str | None = None       # the candidate, relative to the run directory
    t: float | None = None
    details: dict[str, Any] = field(default_factory=dict)  # the task kind's result fields

    @property
    def key(self) -> StepKey:
        return (self.phase, self.agent, self.step)

    @property
    def evaluated(self) -> bool:
        return self.status not in ("waiting", "evaluating", "format_error", "llm_failed")


@dataclass(slots=True)
class TaskState:
    id: str
    status: str = "pending"
    reason: str | None = None
    baselines: dict[str, float] = field(default_factory=dict)
    steps: dict[StepKey, Step] = field(default_factory=dict)
    phases_done: dict[int, dict[str, Any]] = field(default_factory=dict)
    phase: int | None = None
    candidates: int = 0
    correct: int = 0
    best: Step | None = None
    best_attempt: Attempt | None = None  # the best as the summary rule sees it (kept: hot)
    calls: int = 0
    evaluating: int = 0          # steps with a reply whose evaluation has not come back
    ideas: bool = False
    statuses: Counter = field(default_factory=Counter)
    started_t: float | None = None
    finished_t: float | None = None

    def against(self, mode: str, eval_mode: str | None) -> Against | None:
        """The best candidate's speedup against ``mode`` by the summary rule: what its
        evaluation reported (paired, or labelled cached)."""
        best = self.best
        if best is None:
            return None
        attempt = Attempt(phase=best.phase, status=best.status, runtime_ms=best.runtime_ms,
                          speedup=best.speedup, baseline_ms=best.baseline_ms,
                          speedup_ci=interval(best.speedup_ci),
                          speedup_from=best.speedup_from, speedups=against_each(best.speedups))
        return speedup_against(attempt, mode, self.baselines, eval_mode)

    def speedup(self, mode: str, eval_mode: str | None) -> float | None:
        found = self.against(mode, eval_mode)
        return found.speedup if found else None

    def consider(self, step: Step) -> None:
        """Make ``step`` the best when the one summary rule (``better``) says so."""
        attempt = _attempt(step)
        if better(attempt, self.best_attempt):
            self.best, self.best_attempt = step, attempt

    @property
    def best_runtime_ms(self) -> float | None:
        return self.best.runtime_ms if self.best else None


@dataclass(slots=True)
class LLMStats:
    calls: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_s: float = 0.0
    errors: int = 0
    failed: int = 0
    format_errors: int = 0
    budget_exhausted: str | None = None


class RunState:
    """Events folded into per-task and per-run figures.  Not thread-safe on its own."""

    def __init__(self, eval_mode: str | None = None, tasks: list[str] | None = None,
                 baselines: list[str] | None = None) -> None:
        self.eval_mode = eval_mode
        self.baselines = list(baselines or [])
        self.tasks: dict[str, TaskState] = {}
        for task_id in tasks or []:
            self.task(task_id)
        self.status = "waiting"   # before run_started; then running or run_finished's status
        self.model: str | None = None
        self.strategy: str | None = None
        self.env: dict[str, Any] = {}
        self.resumes = 0
        self.first_t: float | None = None
        self.last_t: float | None = None
        self.events = 0
        self.last_seq = 0
        self.llm = LLMStats()
        self.eval_statuses: Counter = Counter()
        self.eval_times: list[float] = []
        self._samples: dict[str, tuple[TaskState, Step]] = {}  # a step's llm_call, for its eval
        self.dirty: set[str] = set()   # tasks changed since the last take_dirty()
        self.version = 0               # bumped by every fold that changed something

    # -- folding ---------------------------------------------------------------------------
    def fold(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        handlers = HANDLERS
        for event in events:
            handler = handlers.get(event.get("type"))  # unknown types are counted only
            if handler is not None:
                try:  # noqa: SIM105 - the hot loop: suppress() costs more
                    handler(self, event)
                except (KeyError, TypeError, ValueError, AttributeError):
                    pass  # a malformed event must not stop the monitor
        self.events += len(events)
        t = [e["t"] for e in (events[0], events[-1]) if isinstance(e.get("t"), (int, float))]
        if t:
            self.first_t = t[0] if self.first_t is None else self.first_t
            self.last_t = t[-1]
        seq = events[-1].get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
        self.version += 1

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty

    def task(self, task_id: str) -> TaskState:
        state = self.tasks.get(task_id)
        if state is None:
            state = self.tasks[task_id] = TaskState(task_id)
        return state

    def _step(self, task: TaskState, key: StepKey) -> Step:
        step = task.steps.get(key)
        if step is None:
            step = task.steps[key] = Step(*key)
            if task.phase is None or key[0] > task.phase:
                task.phase = key[0]
        return step

    def _run_started(self, e: dict[str, Any]) -> None:
        if self.model is not None:
            self.resumes += 1
        self.status = "running"
        self.model, self.strategy = e.get("model"), e.get("strategy")
        self.env = e.get("env") or {}
        if isinstance(e.get("baselines"), list):
            self.baselines = [str(b) for b in e["baselines"]]
        if e.get("mode"):
            self.eval_mode = str(e["mode"])
        for task_id in e.get("tasks") or []:
            self.task(task_id)
        self.dirty.update(self.tasks)

    def _task_started(self, e: dict[str, Any]) -> None:
        task = self.task(e["task"])
        task.status, task.reason = "running", None
        task.started_t = task.started_t or e.get("t")
        self.dirty.add(task.id)

    def _baseline(self, e: dict[str, Any]) -> None:
        task = self.task(e["task"])
        if e.get("ms") is not None:
            task.baselines[e["mode"]] = e["ms"]
        self.dirty.add(task.id)

    def _llm_call(self, e: dict[str, Any]) -> None:
        llm = self.llm
        llm.calls += 1
        llm.cached += bool(e.get("cached"))
        llm.prompt_tokens += e.get("prompt_tokens") or 0
        llm.completion_tokens += e.get("completion_tokens") or 0
        llm.cost_usd += e.get("cost_usd") or 0.0
        llm.latency_s += e.get("latency_s") or 0.0
        sample = e.get("sample") or ""
        task_id, key = parse_sample(sample)
        task = self.task(task_id)
        task.calls += 1
        if key is None:
            task.ideas = True
        else:
            step = self._step(task, key)
            self._samples[sample] = (task, step)
            if step.status in ("waiting", "llm_failed"):
                step.status = "evaluating"
                task.evaluating += 1
        self.dirty.add(task.id)

    def _llm_error(self, e: dict[str, Any]) -> None:
        self.llm.errors += 1

    def _llm_failed(self, e: dict[str, Any]) -> None:
        self.llm.failed += 1
        task_id, key = parse_sample(e.get("sample") or "")
        if key is not None:
            task = self.task(task_id)
            self._settle(task, self._step(task, key), "llm_failed")
            self.dirty.add(task.id)

    def _format_error(self, e: dict[str, Any]) -> None:
        self.llm.format_errors += 1
        task_id, key = parse_sample(e.get("sample") or e.get("step") or "")
        if key is not None:
            task = self.task(e.get("task") or task_id)
            self._settle(task, self._step(task, key), "format_error")
            self.dirty.add(task.id)

    def _eval(self, e: dict[str, Any]) -> None:
        sample = e.get("sample") or e["step"]  # "step" in logs of kbtool 0.1
        found = self._samples.get(sample)
        if found is not None:
            task, step = found
        else:  # no llm_call logged for it (e.g. a log that starts mid-run)
            task_id, key = parse_sample(sample)
            if key is None:
                return
            task = self.task(e.get("task") or task_id)
            step = self._step(task, key)
        again = step.evaluated  # the same step twice (never logged so; be safe)
        if again:
            task.statuses[step.status] -= 1
            self.eval_statuses[step.status] -= 1
            task.candidates -= 1
            task.correct -= step.status == "ok"
        status = e.get("status") or "?"
        runtime = e.get("runtime_ms")
        self._settle(task, step, status)
        step.runtime_ms = runtime
        step.baseline_ms, step.speedup = e.get("baseline_ms"), e.get("speedup")
        step.speedup_ci, step.speedup_from = e.get("speedup_ci"), e.get("speedup_from")
        step.speedups = e.get("speedups") or {}
        step.flags, step.path, step.t = e.get("flags") or [], e.get("path"), e.get("t")
        step.details = e.get("details") or {}
        task.candidates += 1
        task.statuses[status] = task.statuses.get(status, 0) + 1
        self.eval_statuses[status] = self.eval_statuses.get(status, 0) + 1
        if step.t is not None:
            self.eval_times.append(step.t)
        if status == "ok":
            task.correct += 1
            task.consider(step)
        if again:
            task.best = task.best_attempt = None
            for other in sorted(task.steps.values(), key=lambda s: s.t or 0):
                task.consider(other)
        self.dirty.add(task.id)

    @staticmethod
    def _settle(task: TaskState, step: Step, status: str) -> None:
        if step.status == "evaluating":
            task.evaluating -= 1
        step.status = status

    def _phase_done(self, e: dict[str, Any]) -> None:
        task = self.task(e["task"])
        task.phases_done[int(e["phase"])] = {"correct": e.get("correct"),
                                             "best_runtime_ms": e.get("best_runtime_ms")}
        self.dirty.add(task.id)

    def _task_end(self, e: dict[str, Any]) -> None:
        task = self.task(e["task"])
        task.status = e["type"][5:]  # done, skipped, failed
        task.reason = e.get("reason") or e.get("error")
        task.finished_t = e.get("t")
        self.dirty.add(task.id)

    def _budget(self, e: dict[str, Any]) -> None:
        self.llm.budget_exhausted = e.get("reason") or "budget exhausted"

    def _run_finished(self, e: dict[str, Any]) -> None:
        self.status = e.get("status") or "finished"

    # -- figures ---------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.status in ("waiting", "running")

    def elapsed_s(self, now: float) -> float:
        if self.first_t is None:
            return 0.0
        end = now if self.running else (self.last_t or now)
        return max(0.0, end - self.first_t)

    @property
    def evaluations(self) -> int:
        return sum(self.eval_statuses.values())

    def eval_rate(self, now: float) -> tuple[float, float]:
        """Evaluations per minute: over the whole run, and over the last five minutes (up
        to ``now`` while the run goes on, else up to its last event)."""
        minutes = self.elapsed_s(now) / 60
        overall = self.evaluations / minutes if minutes > 0 else 0.0
        end = now if self.running else (self.last_t or now)
        recent = len(self.eval_times) - bisect.bisect_left(self.eval_times, end - RECENT_S)
        return overall, recent / (min(RECENT_S, self.elapsed_s(now) or RECENT_S) / 60)

    def awaiting_eval(self) -> int:
        """Replies whose candidate is being (or waiting to be) evaluated."""
        if not self.running:
            return 0
        return sum(task.evaluating for task in self.tasks.values() if task.status == "running")

    def counts(self) -> Counter:
        return Counter(task.status for task in self.tasks.values())


# Each event type's fold.  A class-level table, not bound methods in the instance: those
# would make every RunState a reference cycle, which a frozen one (see RunFollower.poll)
# would keep alive for good once dropped.
HANDLERS: dict[Any, Callable[[RunState, dict[str, Any]], None]] = {
    "run_started": RunState._run_started, "task_started": RunState._task_started,
    "baseline": RunState._baseline, "llm_call": RunState._llm_call,
    "llm_error": RunState._llm_error, "llm_failed": RunState._llm_failed,
    "format_error": RunState._format_error, "eval": RunState._eval,
    "phase_done": RunState._phase_done, "task_done": RunState._task_end,
    "task_skipped": RunState._task_end, "task_failed": RunState._task_end,
    "budget_exhausted": RunState._budget, "run_finished": RunState._run_finished,
}

# Runs that did not log their baselines (written before they could) are KernelBench runs.
LEGACY_BASELINES = ("eager", "compile")


def _attempt(step: Step) -> Attempt:
    return Attempt(phase=step.phase, status=step.status, runtime_ms=step.runtime_ms,
                   speedup=step.speedup, baseline_ms=step.baseline_ms)


def _config(layout: RunLayout) -> dict[str, Any]:
    try:
        config = yaml.safe_load(layout.config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    return config if isinstance(config, dict) else {}


def _queue_dirs(config: dict[str, Any]) -> tuple[Path, Path] | None:
    """The run's worker queue, when it evaluates through one."""
    if not config.get("worker_input_dir"):
        return None
    return Path(config["worker_input_dir"]), Path(config.get("worker_output_dir") or ".")


def _listed_tasks(layout: RunLayout) -> list[str]:
    try:
        return [item["id"] for item in json.loads(layout.tasks.read_text())]
    except (OSError, ValueError, KeyError, TypeError):
        return []


FREEZE_EVENTS = 10_000  # the state is frozen for the cycle collector after this many more


@contextmanager
def without_cycle_collection() -> Iterator[None]:
    """Python's cycle collector paused: while a large log is parsed and folded it would scan
    the hundreds of thousands of objects made so far again and again, which costs a third of
    the time; nothing made here forms a cycle, so reference counting frees it all."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class RunFollower:
    """A run directory's state, kept up to date by ``poll()`` (thread-safe)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.layout = RunLayout(run_dir)
        self.lock = threading.RLock()  # the UI may re-enter while refreshing
        self.tail = EventTail(self.layout.events)
        self.state = self._new_state()
        self.queue_dirs = _queue_dirs(_config(self.layout))
        self.queue: dict[str, Any] | None = None  # workers and depth of the run's queue
        self.frozen_events = 0  # events in the state when it was last frozen (gc.freeze)
        # (bytes read, bytes in the log) while some is unread; set with the fold, under the
        # lock, so that it always describes the state
        self.loading: tuple[int, int] | None = None
        try:
            size = self.layout.events.stat().st_size
            self.loading = (0, size) if size else None
        except OSError:
            pass

    def _new_state(self) -> RunState:
        config = _config(self.layout)
        baselines = config.get("baselines")
        baselines = baselines if isinstance(baselines, list) else list(LEGACY_BASELINES)
        mode = config.get("mode") or (baselines[0] if baselines else None)
        return RunState(mode, _listed_tasks(self.layout), baselines)

    def poll(self, max_bytes: int | None = None) -> int:
        """Read and fold what was appended since the last poll (at most ``max_bytes`` of
        it); the number of events."""
        with without_cycle_collection():
            events = self.tail.read(max_bytes)
            with self.lock:
                if self.tail.restarted:  # the log was replaced: start over
                    self.tail.restarted = False
                    self.state = self._new_state()
                    self.state.dirty.add("*")
                    self.frozen_events = 0
                self.state.fold(events)
                if self.state.events - self.frozen_events >= FREEZE_EVENTS:
                    # What is folded lives as long as the monitor: out of the cycle
                    # collector's sight, a full collection (which Python starts now and then
                    # as objects pile up) no longer walks it: 0.1-0.2 s, a frame missed.
                    # Freezing keeps whatever cyclic garbage is pending now, and is done
                    # once every FREEZE_EVENTS events.
                    gc.freeze()
                    self.frozen_events = self.state.events
                tail = self.tail
                self.loading = (tail.offset + len(tail.partial), tail.size) if tail.behind \
                    else None
        if self.loading is not None:
            return len(events)  # the queue is looked at once the log is read
        if self.queue_dirs is not None and (self.queue_dirs[0] / "pending").is_dir():
            from kbtool.workers.jobqueue import Queue
            from kbtool.workers.worker import status

            found = status(Queue(*self.queue_dirs))
            with self.lock:
                self.queue = found
        return len(events)

    def step_dir(self, task_id: str, key: StepKey) -> Path:
        return self.layout.step_dir(task_id, *key)

    def ideas_file(self, task_id: str) -> Path:
        return self.layout.ideas(task_id)
