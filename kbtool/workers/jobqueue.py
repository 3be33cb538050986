"""A job queue over a shared directory pair: no server, only files and atomic renames.

Layout (``IN`` = ``worker_input_dir``, ``OUT`` = ``worker_output_dir``)::

    IN/pending/<job>.json          jobs waiting (written to a temp name, then renamed)
    IN/claimed/<job>.json          jobs a worker took (renamed from pending: one winner)
    IN/leases/<job>.<worker>       the claim's lease; its mtime is renewed while working
    IN/attempts/<job>.<n>          one empty file per claim that ended without a result
    IN/bad/<name>, <name>.reason   malformed files, moved aside with the reason
    IN/workers/<worker>.json       heartbeats and counters of each worker
    OUT/<job>.json                 results (first one wins: a job finished twice yields one)

A worker that dies loses nothing: once its lease is older than ``lease_s``, any worker
moves the job back to ``pending``.  A job whose claims ended without a result
``max_attempts`` times (it kills workers) gets a failed result instead of looping.

Claiming takes the first entry ``os.scandir`` yields that another worker has not taken:
no listing is sorted, so a claim costs the same with 10 or 10,000 jobs queued.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from kbtool.task.model import Task
from kbtool.util.files import write_atomic, write_new

JOB_SCHEMA: Final = 2  # 2: the task travels whole (its kind's payload); 1: a problem file's text
RESULT_SCHEMA: Final = 1


class Job(BaseModel):
    """An evaluation request: the task (made self-contained by its kind), the candidate's
    text and the settings that change a verdict."""

    schema_version: Literal[2] = JOB_SCHEMA
    id: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="also a file name: no dots")
    kind: Literal["eval", "baseline", "inspect"] = "eval"
    task: Task
    candidate: str = Field("", description="the candidate file's text (eval jobs)")
    config: dict[str, Any] = Field(default_factory=dict, description="evaluation settings")
    submitted: float = Field(default_factory=time.time)

    @model_validator(mode="before")
    @classmethod
    def _from_v1(cls, data: Any) -> Any:
        """Version 1 (kbtool 0.1): KernelBench only, the problem's text in ``task_source``."""
        if not isinstance(data, dict) or (data.get("schema_version") != 1
                                           and "task_source" not in data):
            return data
        task_id = str(data.get("task_id", ""))
        return {"schema_version": 2, "id": data.get("id"), "kind": data.get("kind", "eval"),
                "task": {"id": task_id, "source": "queue", "name": task_id.rsplit("/", 1)[-1],
                         "kind": data.get("task_kind", "kernelbench"),
                         "payload": {"problem": data.get("task_source")}},
                "candidate": data.get("solution", ""), "config": data.get("config") or {},
                "submitted": data.get("submitted", time.time())}


class JobResult(BaseModel):
    schema_version: Literal[1] = RESULT_SCHEMA
    id: str
    worker: str
    ok: bool = Field(description="the evaluation ran (whatever its verdict)")
    result: dict[str, Any] | None = Field(None, description="an EvalResult")
    info: dict[str, Any] | None = Field(None, description="what an inspect job found")
    error: str | None = None
    finished: float = Field(default_factory=time.time)


def new_job_id() -> str:
    # Time first: names sort roughly by submission, which helps people reading the folder.
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:12]}"


class Queue:
    def __init__(self, input_dir: Path, output_dir: Path, lease_s: float = 60.0,
                 max_attempts: int = 3) -> None:
        self.input_dir, self.output_dir = input_dir, output_dir
        self.lease_s, self.max_attempts = lease_s, max_attempts
        for sub in ("pending", "claimed", "leases", "attempts", "bad", "workers"):
            (input_dir / sub).mkdir(parents=True, exist_ok=True)
        output_dir.mkdir(parents=True, exist_ok=True)

    # -- paths ------------------------------------------------------------------------------
    def _pending(self, job_id: str) -> Path:
        return self.input_dir / "pending" / f"{job_id}.json"

    def _claimed(self, job_id: str) -> Path:
        return self.input_dir / "claimed" / f"{job_id}.json"

    def result_path(self, job_id: str) -> Path:
        return self.output_dir / f"{job_id}.json"

    # -- producer ---------------------------------------------------------------------------
    def submit(self, job: Job) -> str:
        write_atomic(self._pending(job.id), job.model_dump_json(), fsync=True, mkdir=False)
        return job.id

    def result(self, job_id: str) -> JobResult | None:
        try:
            return JobResult.model_validate_json(self.result_path(job_id).read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValidationError, ValueError):
            return None  # being replaced right now: the next look finds it whole

    def wait(self, job_id: str, timeout_s: float, poll_s: float = 0.05) -> JobResult | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.result(job_id)
            if found is not None:
                return found
            time.sleep(poll_s)
        return None

    # -- worker -----------------------------------------------------------------------------
    def claim(self, worker: str) -> Job | None:
        """Take one pending job, or None.  Malformed files are moved aside on the way."""
        with os.scandir(self.input_dir / "pending") as entries:
            for entry in entries:
                if not entry.name.endswith(".json") or entry.name.startswith("."):
                    continue
                job_id = entry.name[:-5]
                claimed = self._claimed(job_id)
                try:
                    os.rename(entry.path, claimed)  # atomic: exactly one worker wins
                except FileNotFoundError:
                    continue  # another worker was faster
                lease = self.input_dir / "leases" / f"{job_id}.{worker}"
                lease.touch()
                try:
                    job = Job.model_validate_json(claimed.read_text())
                    if job.id != job_id:
                        raise ValueError(f"file name {job_id} but id {job.id}")
                except (ValidationError, ValueError, OSError) as exc:
                    self._set_aside(claimed, entry.name, exc)
                    lease.unlink(missing_ok=True)
                    continue
                if self.result_path(job_id).exists():  # finished already (a late re-queue)
                    self._release(job_id, worker)
                    continue
                return job
        return None

    def renew(self, job_id: str, worker: str) -> None:
        (self.input_dir / "leases" / f"{job_id}.{worker}").touch()

    def finish(self, job_id: str, result: JobResult) -> bool:
        """Store the result unless one exists (idempotent); False if it already existed."""
        fresh = write_new(self.result_path(job_id), result.model_dump_json())
        self._release(job_id, result.worker)
        return fresh

    def _release(self, job_id: str, worker: str) -> None:
        self._claimed(job_id).unlink(missing_ok=True)
        (self.input_dir / "leases" / f"{job_id}.{worker}").unlink(missing_ok=True)

    def _set_aside(self, path: Path, name: str, reason: Exception) -> None:
        bad = self.input_dir / "bad" / name
        try:
            os.rename(path, bad)
            write_atomic(bad.with_name(name + ".reason"), f"{type(reason).__name__}: {reason}\n",
                         mkdir=False)
        except OSError:
            pass

    def attempts(self, job_id: str) -> int:
        prefix = f"{job_id}."
        with os.scandir(self.input_dir / "attempts") as entries:
            return sum(1 for e in entries if e.name.startswith(prefix))

    def recover_expired(self, worker: str) -> int:
        """Put jobs whose lease expired back in the queue (or fail them after too many
        attempts).  Any worker may call this; the rename decides who does it."""
        now = time.time()
        recovered = 0
        with os.scandir(self.input_dir / "leases") as entries:
            leases = [(e.name, e.path) for e in entries]
        for name, path in leases:
            try:
                age = now - os.stat(path).st_mtime
            except FileNotFoundError:
                continue
            if age < self.lease_s:
                continue
            job_id, _, dead = name.partition(".")  # job ids have no dot; host names may
            try:
                os.unlink(path)  # one worker wins the right to recover it
            except FileNotFoundError:
                continue
            attempt = self.attempts(job_id) + 1
            (self.input_dir / "attempts" / f"{job_id}.{attempt}").touch()
            claimed = self._claimed(job_id)
            if not claimed.exists():
                continue
            if attempt >= self.max_attempts:
                self.finish(job_id, JobResult(
                    id=job_id, worker=worker, ok=False,
                    error=f"the job ended its worker {attempt} times without a result (last: "
                          f"{dead}); not retried"))
            else:
                try:
                    os.rename(claimed, self._pending(job_id))
                except FileNotFoundError:
                    continue
            recovered += 1
        return recovered

    # -- monitoring --------------------------------------------------------------------------
    def heartbeat(self, worker: str, stats: dict[str, Any]) -> None:
        write_atomic(self.input_dir / "workers" / f"{worker}.json",
                     json.dumps({"worker": worker, "host": socket.gethostname(),
                                 "pid": os.getpid(), "time": time.time(), **stats}))

    def workers(self) -> Iterator[dict[str, Any]]:
        for path in (self.input_dir / "workers").glob("*.json"):
            try:
                yield json.loads(path.read_text())
            except (OSError, ValueError):
                continue

    def depth(self) -> dict[str, int]:
        def count(sub: str) -> int:
            with os.scandir(self.input_dir / sub) as entries:
                return sum(1 for e in entries if e.name.endswith(".json"))
        return {"pending": count("pending"), "claimed": count("claimed"),
                "bad": sum(1 for p in (self.input_dir / "bad").iterdir()
                           if not p.name.endswith(".reason"))}
