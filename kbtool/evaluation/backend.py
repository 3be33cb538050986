"""Evaluation backends: where candidates are evaluated, chosen in one place.

Every command that evaluates (``kbtool eval`` for one task or a batch, ``kbtool tasks show``,
``kbtool run``) asks :func:`make_backend` for an :class:`EvalBackend` and does not care
whether it evaluates on this machine (``local``: a pool of warm evaluators), through the
shared-directory queue (``queue``: ``kbtool worker serve`` processes elsewhere), or through
a backend a plugin adds (``register_eval_backends``).  ``eval_backend=auto`` picks the queue
when ``worker_input_dir``/``worker_output_dir`` are set, else local.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from kbtool.config import Config, eval_settings
from kbtool.errors import RunError, UsageError
from kbtool.evaluation.evaluator import Evaluator, warm_up
from kbtool.evaluation.result import EvalResult, Status, TimingStats
from kbtool.plugin import registry
from kbtool.task.catalog import kind_of
from kbtool.task.model import Task
from kbtool.workers.jobqueue import Job, JobResult, Queue, new_job_id


class EvalBackend(Protocol):
    """What every backend offers; ``config=None`` means the backend's own settings."""

    @property
    def env(self) -> dict[str, Any]:
        """What evaluations run on (device, versions); {} when unknown."""

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]: ...

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats: ...

    def baseline_result(self, task: Task, mode: str | None = None,
                        config: Config | None = None) -> EvalResult: ...

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult: ...

    def close(self) -> None: ...


BackendFactory = Callable[[Config], EvalBackend]


class LocalBackend:
    """``eval_workers`` evaluators on this machine; each takes one step at a time."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._free: queue.Queue[Evaluator] = queue.Queue()
        # Started side by side: each start-up is a Python process.
        with ThreadPoolExecutor(config.eval_workers) as starter:
            self.all = list(starter.map(lambda _: Evaluator(config), range(config.eval_workers)))
        for evaluator in self.all:
            self._free.put(evaluator)
        self.config = self.all[0].config  # the device resolved

    @property
    def env(self) -> dict[str, Any]:
        return warm_up(self.all)

    @contextmanager
    def get(self) -> Iterator[Evaluator]:
        evaluator = self._free.get()
        try:
            yield evaluator
        finally:
            self._free.put(evaluator)

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]:
        with self.get() as evaluator:
            return evaluator.inspect(task, config)

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats:
        with self.get() as evaluator:
            return evaluator.baseline(task, mode, config)

    def baseline_result(self, task: Task, mode: str | None = None,
                        config: Config | None = None) -> EvalResult:
        with self.get() as evaluator:
            return evaluator.baseline_result(task, mode, config)

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        with self.get() as evaluator:
            return evaluator.evaluate(task, solution, config)

    def close(self) -> None:
        with ThreadPoolExecutor(len(self.all)) as closer:
            list(closer.map(Evaluator.close, self.all))


def queue_for(config: Config) -> Queue:
    if not (config.worker_input_dir and config.worker_output_dir):
        raise UsageError("the worker queue needs both worker_input_dir and worker_output_dir")
    return Queue(config.worker_input_dir, config.worker_output_dir, config.lease_s,
                 config.max_attempts)


class QueueBackend:
    """Evaluation by ``kbtool worker serve`` processes through the shared-directory queue.
    A job carries the task made self-contained by its kind and the candidate's text, so
    workers need no access to this machine's files."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.queue = queue_for(config)
        live = [w for w in self.queue.workers() if w.get("env") and not w.get("stopped")]
        self.env: dict[str, Any] = live[0]["env"] if live else {}

    def job(self, task: Task, kind: Literal["eval", "baseline", "inspect"], config: Config,
            candidate: str = "") -> Job:
        settings = eval_settings(config)
        if config.device == "auto":
            settings.pop("device")  # the worker's own device
        return Job(id=new_job_id(), kind=kind, task=kind_of(task).pack(task),
                   candidate=candidate, config=settings)

    def _ask(self, job: Job) -> JobResult:
        self.queue.submit(job)
        reply = self.queue.wait(job.id, self.config.queue_wait_s)
        if reply is None:
            raise RunError(f"no worker answered job {job.id} within "
                           f"{self.config.queue_wait_s:g} s (is `kbtool worker serve` running "
                           f"on {self.queue.input_dir}?)")
        return reply

    def inspect(self, task: Task, config: Config | None = None) -> dict[str, Any]:
        reply = self._ask(self.job(task, "inspect", config or self.config))
        if reply.info is None:
            raise UsageError(f"task {task.id}: {reply.error or 'the worker could not inspect it'}")
        return reply.info

    def baseline_result(self, task: Task, mode: str | None = None,
                        config: Config | None = None) -> EvalResult:
        config = config or self.config
        if mode is not None:
            config = config.model_copy(update={"mode": mode})
        reply = self._ask(self.job(task, "baseline", config))
        if reply.result is None:
            raise UsageError(f"baseline of {task.id} through the queue failed: {reply.error}")
        return EvalResult.model_validate({**reply.result, "task": task.id})

    def baseline(self, task: Task, mode: str, config: Config | None = None) -> TimingStats:
        stats = self.baseline_result(task, mode, config).timing
        if stats is None:
            raise RunError(f"the worker's baseline of {task.id} has no timing")
        return stats

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        """Submit, wait, and return the worker's verdict in the local JSON schema."""
        config = config or self.config
        reply = self._ask(self.job(task, "eval", config, solution.read_text()))
        if reply.result is not None:
            return EvalResult.model_validate({**reply.result, "task": task.id,
                                              "solution": str(solution)})
        return EvalResult(task=task.id, kind=task.kind, solution=str(solution),
                          device=config.device, mode=config.mode, status=Status.runtime_error,
                          error=f"worker {reply.worker}: {reply.error}")

    def close(self) -> None:
        pass


def backend_name(config: Config) -> str:
    if config.eval_backend != "auto":
        return config.eval_backend
    return "queue" if config.worker_input_dir or config.worker_output_dir else "local"


def make_backend(config: Config) -> EvalBackend:
    """The backend ``config`` asks for (see the module docstring)."""
    factory: BackendFactory = registry.EVAL_BACKENDS.get(backend_name(config))
    return factory(config)
