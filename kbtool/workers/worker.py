"""``kbtool worker serve``: evaluate jobs from the shared-directory queue.

One worker owns one device (a GPU, or the CPU) and runs ``eval_workers`` jobs at once: they
load and compile side by side, and take turns for correctness and timing (a device lock),
because a timing measured next to another evaluation is not worth publishing.  Each claim's
lease is renewed by a thread while its job runs; SIGTERM lets the current jobs finish, then
the worker exits.  A queue that stops answering (its folder vanished: an unmounted share, a
cleaned scratch) stops the worker with one line (a ``RunError``), never a thread's traceback;
the jobs it held go back to the queue when their leases expire.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbtool.config import Config, config_as_dict, route, validate
from kbtool.errors import KbtoolError, RunError
from kbtool.evaluation.evaluator import Evaluator, warm_up
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task.catalog import kind_of
from kbtool.workers.jobqueue import Job, JobResult, Queue
from kbtool.workers.watch import FolderWatch

HEARTBEAT_S = 5.0


class Worker:
    """Serves a queue with ``eval_workers`` job slots: slots load and compile side by side and
    take turns on the device for correctness and timing (``kbtool.sandbox.devicelock``)."""

    def __init__(self, config: Config, queue: Queue, worker_id: str | None = None) -> None:
        self.config = config
        self.queue = queue
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.stats: dict[str, Any] = {"started": time.time(), "done": 0, "failed": 0,
                                      "busy": 0, "slots": config.eval_workers}
        self._lock = threading.Lock()
        self._scratch = Path(config.cache_dir) / "worker" / self.id
        self.failure: OSError | None = None  # the queue error that stopped the worker

    def make_evaluator(self) -> Evaluator:
        """One job slot's evaluator."""
        return Evaluator(self.config)

    def drain(self, *_: Any) -> None:
        """Finish the current jobs, claim no other."""
        self.stopping.set()

    def _beat(self) -> None:
        with self._lock:
            stats = dict(self.stats)
        self.queue.heartbeat(self.id, stats)

    def _fail(self, exc: OSError) -> None:
        """A queue operation failed: claim nothing more; ``serve`` reports the first error."""
        with self._lock:
            self.failure = self.failure or exc
        self.stopping.set()

    def _guarded(self, operation: Callable[[], Any]) -> None:
        try:
            operation()
        except OSError as exc:
            self._fail(exc)

    def _failure_line(self) -> str:
        done = self.stats["done"]
        folders = (self.queue.input_dir / "pending", self.queue.output_dir)
        gone = [str(f) for f in folders if not f.is_dir()]
        what = (f"the queue folder {gone[0]} is gone (unmounted or removed?)" if gone
                else f"the queue failed ({self.failure})")
        return (f"worker {self.id}: {what}; stopped after {done} job{'s' * (done != 1)} (jobs "
                "it held go back to the queue when their leases expire)")

    def serve(self, max_jobs: int | None = None, idle_exit_s: float | None = None) -> int:
        signal.signal(signal.SIGTERM, self.drain)
        evaluators = [self.make_evaluator() for _ in range(self.config.eval_workers)]
        self.stats["env"] = warm_up(evaluators)
        budget = {"left": max_jobs, "idle_since": time.monotonic()}
        slots = [threading.Thread(target=self._slot, args=(ev, budget, idle_exit_s), daemon=True)
                 for ev in evaluators]
        try:
            for slot in slots:
                slot.start()
            last_recover = 0.0
            while any(slot.is_alive() for slot in slots):
                if time.monotonic() - last_recover >= min(self.config.lease_s / 3, 10.0):
                    self._guarded(lambda: self.queue.recover_expired(self.id))
                    last_recover = time.monotonic()
                self._guarded(self._beat)
                for slot in slots:
                    slot.join(timeout=HEARTBEAT_S / len(slots))
        finally:
            self.stopping.set()
            for slot in slots:
                slot.join()
            for evaluator in evaluators:
                evaluator.close()
            with self._lock:
                self.stats["stopped"] = time.time()
            self._guarded(self._beat)
        if self.failure is not None:
            raise RunError(self._failure_line())
        return self.stats["done"]

    def _take(self, budget: dict[str, Any]) -> bool:
        """Whether this slot may claim another job (``max_jobs`` over all slots)."""
        with self._lock:
            if budget["left"] is None:
                return True
            if budget["left"] <= 0:
                return False
            budget["left"] -= 1
            return True

    def _slot(self, evaluator: Evaluator, budget: dict[str, Any],
              idle_exit_s: float | None) -> None:
        watch = FolderWatch(self.queue.input_dir / "pending")
        try:
            while not self.stopping.is_set() and self._take(budget):
                job = self.queue.claim(self.id)
                while job is None and not self.stopping.is_set():
                    if idle_exit_s is not None and \
                            time.monotonic() - budget["idle_since"] >= idle_exit_s:
                        self.stopping.set()
                        return
                    watch.wait(min(self.config.worker_poll_s, self.config.lease_s / 3))
                    job = self.queue.claim(self.id)
                if job is None:
                    return
                self.run_job(job, evaluator)
                budget["idle_since"] = time.monotonic()
            if budget["left"] is not None and budget["left"] <= 0:
                self.stopping.set()
        except OSError as exc:  # claim, finish or a heartbeat: the queue is unreachable
            self._fail(exc)
        finally:
            watch.close()

    def run_job(self, job: Job, evaluator: Evaluator) -> None:
        with self._lock:
            self.stats["busy"] += 1
        renewing = threading.Event()

        def renew() -> None:
            while not renewing.wait(self.config.lease_s / 3):
                self._guarded(lambda: self.queue.renew(job.id, self.id))

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            result = self.answer(job, evaluator)
        finally:
            renewing.set()
            renewer.join()
        self.queue.finish(job.id, result)
        failed = not result.ok or (result.result or {}).get("status") != Status.ok.value
        with self._lock:
            self.stats["done"] += 1
            self.stats["failed"] += failed
            self.stats["busy"] -= 1
            self.stats["last_finished"] = time.time()
        self._beat()

    def answer(self, job: Job, evaluator: Evaluator) -> JobResult:
        """Do what ``job`` asks; errors become a failed ``JobResult``, not a dead worker."""
        try:
            settings = route({k: v for k, v in job.config.items() if k != "device"})
            base = route(config_as_dict(evaluator.config))
            sections = {**base.get("sections", {}), **settings.get("sections", {})}
            config = validate({**base, **settings, "sections": sections})
            kind_of(job.task)
            if job.kind == "inspect":
                return JobResult(id=job.id, worker=self.id, ok=True,
                                 info=evaluator.inspect(job.task, config))
            if job.kind == "baseline":
                result = evaluator.baseline_result(job.task, None, config)
            else:
                result = self._evaluate(job, evaluator, config)
            return JobResult(id=job.id, worker=self.id, ok=True,
                             result=result.model_dump(mode="json"))
        except KbtoolError as exc:
            return JobResult(id=job.id, worker=self.id, ok=False, error=str(exc))

    def _evaluate(self, job: Job, evaluator: Evaluator, config: Config) -> EvalResult:
        folder = self._scratch / job.id
        folder.mkdir(parents=True, exist_ok=True)
        candidate = folder / f"candidate{kind_of(job.task).candidate_suffix}"
        candidate.write_text(job.candidate)
        try:
            return evaluator.evaluate(job.task, candidate, config)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def status(queue: Queue, stale_s: float = 3 * HEARTBEAT_S) -> dict[str, Any]:
    now = time.time()
    workers = list(queue.workers())
    alive = [w for w in workers if now - w.get("time", 0) < stale_s and not w.get("stopped")]
    done = sum(w.get("done", 0) for w in workers)
    minutes = sum(max(1e-9, (w.get("time", now) - w.get("started", now)) / 60) for w in alive)
    return {"workers_alive": len(alive), "workers_known": len(workers),
            "queue": queue.depth(), "jobs_done": done,
            "jobs_failed": sum(w.get("failed", 0) for w in workers),
            "throughput_per_min": round(sum(w.get("done", 0) for w in alive) / minutes, 2)
            if alive else 0.0,
            "workers": workers}
