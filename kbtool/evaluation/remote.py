"""Evaluate through the shared-directory queue: what ``kbtool eval`` and ``kbtool run`` do
when ``worker_input_dir``/``worker_output_dir`` are set.  The job carries the problem's and
the candidate's text, so workers need no access to the client's paths."""

from __future__ import annotations

from pathlib import Path

from kbtool.config.settings import EVAL_KEYS, Config
from kbtool.errors import KbtoolError
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task.model import Task
from kbtool.workers.jobqueue import Job, Queue, new_job_id


def queue_for(config: Config) -> Queue:
    if not (config.worker_input_dir and config.worker_output_dir):
        raise KbtoolError("the worker queue needs both worker_input_dir and worker_output_dir")
    return Queue(config.worker_input_dir, config.worker_output_dir, config.lease_s,
                 config.max_attempts)


def make_job(task: Task, solution_text: str, config: Config, kind: str = "eval") -> Job:
    if task.path is None:
        raise KbtoolError(f"task {task.id} has no problem file to send to a worker")
    settings = config.model_dump(mode="json")
    eval_config = {key: settings[key] for key in EVAL_KEYS if key != "device"}
    if config.device != "auto":
        eval_config["device"] = config.device
    return Job(id=new_job_id(), kind=kind, task_id=task.id, task_source=task.path.read_text(),
               task_kind=task.kind, solution=solution_text, config=eval_config)


def evaluate_remote(queue: Queue, task: Task, solution: Path, config: Config) -> EvalResult:
    """Submit, wait, and return the worker's verdict in the local JSON schema."""
    job = make_job(task, solution.read_text(), config)
    queue.submit(job)
    reply = queue.wait(job.id, config.queue_wait_s)
    if reply is None:
        raise KbtoolError(f"no worker answered job {job.id} within {config.queue_wait_s:g} s "
                          f"(is `kbtool worker serve` running on {queue.input_dir}?)")
    if reply.result is not None:
        return EvalResult.model_validate({**reply.result, "task": task.id,
                                          "solution": str(solution)})
    return EvalResult(task=task.id, solution=str(solution), device=config.device,
                      mode=config.mode, status=Status.runtime_error,
                      error=f"worker {reply.worker}: {reply.error}")
