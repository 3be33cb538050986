"""``kbtool worker serve``: evaluate jobs from the shared-directory queue.

One worker owns one device (a GPU, or the CPU): evaluations run one at a time, because a
timing measured next to another evaluation is not worth publishing.  Compilation happens in
the candidate's own process inside the evaluation.  The claim's lease is renewed by a
thread while the job runs; SIGTERM lets the current job finish, then the worker exits.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kbtool.config import EVAL_KEYS, Config
from kbtool.errors import KbtoolError
from kbtool.evaluator import Evaluator
from kbtool.queue import Job, JobResult, Queue
from kbtool.result import EvalResult, Status
from kbtool.task import Task
from kbtool.watch import FolderWatch

HEARTBEAT_S = 5.0


class Worker:
    def __init__(self, config: Config, queue: Queue, worker_id: str | None = None) -> None:
        self.config = config
        self.queue = queue
        self.id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.stopping = threading.Event()
        self.stats: dict[str, Any] = {"started": time.time(), "done": 0, "failed": 0,
                                      "busy": False, "current": None}
        self._evaluator: Evaluator | None = None
        self._scratch = Path(config.cache_dir) / "worker" / self.id

    @property
    def evaluator(self) -> Evaluator:
        if self._evaluator is None:
            self._evaluator = Evaluator(self.config)
        return self._evaluator

    def drain(self, *_: Any) -> None:
        """Finish the current job, claim no other."""
        self.stopping.set()

    def serve(self, max_jobs: int | None = None, idle_exit_s: float | None = None) -> int:
        signal.signal(signal.SIGTERM, self.drain)
        self.stats["env"] = self.evaluator.env  # start the evaluator before the first job
        watch = FolderWatch(self.queue.input_dir / "pending")
        last_beat = last_recover = 0.0
        idle_since = time.monotonic()
        done = 0
        try:
            while not self.stopping.is_set():
                now = time.monotonic()
                if now - last_beat >= HEARTBEAT_S:
                    self.queue.heartbeat(self.id, self.stats)
                    last_beat = now
                if now - last_recover >= min(self.config.lease_s / 3, 10.0):
                    self.queue.recover_expired(self.id)
                    last_recover = now
                job = self.queue.claim(self.id)
                if job is None:
                    if idle_exit_s is not None and now - idle_since >= idle_exit_s:
                        break
                    watch.wait(min(self.config.worker_poll_s, self.config.lease_s / 3))
                    continue
                self.run_job(job)
                done += 1
                idle_since = time.monotonic()
                if max_jobs is not None and done >= max_jobs:
                    break
        finally:
            watch.close()
            self.stats["busy"] = False
            self.stats["stopped"] = time.time()
            self.queue.heartbeat(self.id, self.stats)
            if self._evaluator is not None:
                self._evaluator.close()
        return done

    def run_job(self, job: Job) -> None:
        self.stats.update(busy=True, current=job.id)
        renewing = threading.Event()

        def renew() -> None:
            while not renewing.wait(self.config.lease_s / 3):
                self.queue.renew(job.id, self.id)

        renewer = threading.Thread(target=renew, daemon=True)
        renewer.start()
        try:
            result = JobResult(id=job.id, worker=self.id, ok=True,
                               result=self.evaluate(job).model_dump(mode="json"))
        except KbtoolError as exc:
            result = JobResult(id=job.id, worker=self.id, ok=False, error=str(exc))
        finally:
            renewing.set()
            renewer.join()
        self.queue.finish(job.id, result)
        failed = not result.ok or (result.result or {}).get("status") != Status.ok.value
        self.stats["done"] += 1
        self.stats["failed"] += failed
        self.stats.update(busy=False, current=None, last_finished=time.time())
        self.queue.heartbeat(self.id, self.stats)

    def evaluate(self, job: Job) -> EvalResult:
        folder = self._scratch / job.id
        folder.mkdir(parents=True, exist_ok=True)
        problem = folder / "problem.py"
        problem.write_text(job.task_source)
        solution = folder / "solution.py"
        solution.write_text(job.solution)
        task = Task(id=job.task_id, source="queue", name=job.task_id.rsplit("/", 1)[-1],
                    kind=job.task_kind, path=problem)
        settings = {k: v for k, v in job.config.items() if k in EVAL_KEYS and k != "device"}
        try:
            config = Config.model_validate({**self.evaluator.config.model_dump(), **settings})
        except ValidationError as exc:
            raise KbtoolError(f"job {job.id} has bad settings: {exc.errors()[0]['msg']}") \
                from None
        try:
            if job.kind == "baseline":
                stats = self.evaluator.baseline(task, config.mode, config)
                return EvalResult(task=task.id, solution="baseline", device=config.device,
                                  mode=config.mode, timer=self.evaluator.timer.name,
                                  status=Status.ok, correct=True, runtime_ms=stats.median_ms,
                                  baseline_ms=stats.median_ms, speedup=1.0, timing=stats,
                                  baseline=stats, env=self.evaluator.env)
            return self.evaluator.evaluate(task, solution, config)
        finally:
            for path in (problem, solution):
                path.unlink(missing_ok=True)
            folder.rmdir()


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
