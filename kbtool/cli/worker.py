"""``kbtool worker serve|status|start``: evaluation workers over a shared directory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile, worker_app
from kbtool.errors import UsageError

log = logging.getLogger(__name__)


@worker_app.command("serve")
def worker_serve(
    args: Annotated[list[str] | None, typer.Argument(
        help="worker_input_dir=IN worker_output_dir=OUT and other key=value settings.")] = None,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after this many jobs.")] = None,
    idle_exit: Annotated[float | None, typer.Option(
        help="Exit after this many seconds without a job.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Evaluate jobs from a shared-directory queue until stopped (SIGTERM drains)."""
    from kbtool.cli.common import make_config, no_words
    from kbtool.config import split_overrides
    from kbtool.evaluation.backend import queue_for
    from kbtool.workers.worker import Worker

    words, overrides = split_overrides(args or [])
    no_words("worker serve", words)
    config = make_config(overrides, config_file, config_profile)
    worker = Worker(config, queue_for(config))
    log.info("worker %s: serving %s", worker.id, config.worker_input_dir)
    done = worker.serve(max_jobs=max_jobs, idle_exit_s=idle_exit)
    log.info("worker %s: stopped after %d jobs", worker.id, done)


@worker_app.command("status")
def worker_status(
    input_dir: Annotated[Path, typer.Argument(help="The queue's worker_input_dir.")],
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", help="The queue's worker_output_dir (default: beside it).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Workers alive, queue depth, throughput and failures of a queue."""
    from kbtool.workers.jobqueue import Queue
    from kbtool.workers.worker import status

    if not (input_dir / "pending").is_dir():
        raise UsageError(f"{input_dir} is not a kbtool queue (no pending/ folder)")
    info = status(Queue(input_dir, output_dir or input_dir.parent / "output"))
    if as_json:
        print(json.dumps(info, default=str))
        return
    q = info["queue"]
    print(f"workers alive: {info['workers_alive']} (known {info['workers_known']})")
    print(f"queue: {q['pending']} pending, {q['claimed']} running, {q['bad']} set aside")
    print(f"jobs done: {info['jobs_done']}, not ok: {info['jobs_failed']}, "
          f"throughput: {info['throughput_per_min']}/min")
    for w in info["workers"]:
        state = "stopped" if w.get("stopped") else ("busy" if w.get("busy") else "idle")
        print(f"  {w['worker']} on {w.get('host')}: {state}, {w.get('done', 0)} done")
