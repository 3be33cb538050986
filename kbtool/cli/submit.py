"""``kbtool submit``, ``kbtool jobs`` and ``kbtool profiles``: batch schedulers and sites."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kbtool.cli.app import jobs_app, profiles_app, submit_app
from kbtool.errors import UsageError

log = logging.getLogger(__name__)

SiteProfileOpt = Annotated[str, typer.Option(
    "--profile", help="Site profile: a name (kbtool profiles list) or a YAML file.")]
DEFAULT_SCHEDULER = "slurm"  # records written before they named their scheduler


def _submit(profile_name: str, kind: str, args: list[str], dry_run: bool) -> None:
    from kbtool.cluster import jobs, scheduler
    from kbtool.plugin import registry

    profile = scheduler.load_profile(profile_name)
    words, options, settings = scheduler.split_options(args)
    if kind == "workers":
        if words:
            raise UsageError(f"submit workers takes key=value options, not {words[0]!r}")
        script, meta = scheduler.render_workers(profile, options, settings)
    else:
        script, meta = scheduler.render_run(profile, options, words, settings)
    if dry_run:
        print(script, end="")
        return
    log_dir = Path(meta["log_dir"])
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"{meta['name']}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.sh"
    path.write_text(script)
    if profile.scheduler is None or profile.scheduler == "none":
        print(f"profile {profile.name!r} has no scheduler; run the job yourself: bash {path}")
        return
    sched = registry.SCHEDULERS.get(profile.scheduler)()
    job_id = sched.submit(path)
    jobs.save_record({"id": job_id, "scheduler": profile.scheduler, **meta,
                      "script": str(path), "submitted": time.time()})
    print(job_id)
    log.info("submitted %s as job %s; logs: %s", meta["name"], job_id,
             sched.log_path(meta["log"], meta["name"], job_id, None))


@submit_app.command("workers")
def submit_workers(
    profile: SiteProfileOpt,
    args: Annotated[list[str] | None, typer.Argument(
        help="worker_input_dir=IN worker_output_dir=OUT and options: account= qos= partition= "
             "constraint= time= gpus= cpus_per_task= array=N idle_exit= max_jobs= log_dir= ...")]
        = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job script; submit nothing.")]
        = False,
) -> None:
    """Submit a pool of eval workers as a job array (one node per task, one worker per GPU).

    kbtool submit workers --profile NAME|FILE [--dry-run] worker_input_dir=IN worker_output_dir=OUT
        [account=A qos=Q time=HH:MM:SS array=N gpus=G ...]
    """
    _submit(profile, "workers", args or [], dry_run)


@submit_app.command("run")
def submit_run(
    profile: SiteProfileOpt,
    args: Annotated[list[str] | None, typer.Argument(
        help="kbtool run's TASKs and key=value settings, and scheduler options.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the job script; submit nothing.")]
        = False,
) -> None:
    """Submit the agent itself (`kbtool run ...`) as a CPU job."""
    _submit(profile, "run", args or [], dry_run)


def job_rows() -> tuple[list[dict[str, Any]], str]:
    """Every recorded job's state, asking each scheduler once about its own jobs."""
    from kbtool.cluster import jobs
    from kbtool.plugin import registry

    by_scheduler: dict[str, list[dict[str, Any]]] = {}
    for record in jobs.load_records():
        by_scheduler.setdefault(record.get("scheduler") or DEFAULT_SCHEDULER, []).append(record)
    rows: list[dict[str, Any]] = []
    sources = []
    for name, records in by_scheduler.items():
        found, source = registry.SCHEDULERS.get(name)().job_table(records)
        rows += found
        sources.append(source)
    return rows, ", ".join(sources) or "no scheduler"


def _print_jobs(rows: list[dict[str, Any]], source: str) -> None:
    if not rows:
        print("no kbtool jobs recorded")
        return
    for row in rows:
        print(f"{row['id']}  {row['name']}  {row['state']}")
        for t in row["tasks"]:
            if t["task"] or len(row["tasks"]) > 1:
                print(f"    task {t['task']}: {t['state']} exit={t['exit']}  log: {t['log']}")
            elif t["state"] in ("FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "CANCELLED"):
                print(f"    exit={t['exit']}  log: {t['log']}")
        if not row["tasks"] or all(not t["task"] for t in row["tasks"]):
            print(f"    log: {row['log']}")
    print(f"(status from {source})", file=sys.stderr)


@jobs_app.callback(invoke_without_command=True)
def jobs_command(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    watch: Annotated[bool, typer.Option(
        "--watch", help="Poll until every job has ended (back-off 5 s to 60 s).")] = False,
    all_jobs: Annotated[bool, typer.Option(
        "--all/--no-all", help="Include jobs that have ended (--no-all: queued and running "
                               "only).")] = True,
) -> None:
    """Status of the kbtool jobs you submitted: one batched query per tick; log paths.

    kbtool jobs [--json] [--watch] [--no-all];  kbtool jobs cancel [JOBID ...]
    """
    if ctx.invoked_subcommand is not None:
        return
    delay, last = 5.0, None
    while True:
        rows, source = job_rows()
        if not all_jobs:
            rows = [r for r in rows if not r["done"]]
        snapshot = [(r["id"], r["state"]) for r in rows]
        if as_json:
            print(json.dumps({"source": source, "jobs": rows}))
        elif snapshot != last:
            _print_jobs(rows, source)
        if not watch or all(r["done"] for r in rows):
            return
        delay = 5.0 if snapshot != last else min(delay * 2, 60.0)
        last = snapshot
        time.sleep(delay)


@jobs_app.command("cancel")
def jobs_cancel(
    job_ids: Annotated[list[str] | None, typer.Argument(
        help="Job ids (default: every recorded kbtool job still queued or running).")] = None,
) -> None:
    """Cancel kbtool jobs (workers drain on SIGTERM)."""
    from kbtool.cluster import jobs
    from kbtool.plugin import registry

    records = {r["id"]: r for r in jobs.load_records()}
    if not job_ids:
        rows, _ = job_rows()
        job_ids = [r["id"] for r in rows if not r["done"]]
    if not job_ids:
        print("no kbtool job to cancel")
        return
    by_scheduler: dict[str, list[str]] = {}
    for job_id in job_ids:
        name = records.get(job_id, {}).get("scheduler") or DEFAULT_SCHEDULER
        by_scheduler.setdefault(name, []).append(job_id)
    for name, ids in by_scheduler.items():
        registry.SCHEDULERS.get(name)().cancel(ids)
    print(f"cancelled: {' '.join(job_ids)}")


@profiles_app.command("list")
def profiles_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The site profiles kbtool knows (plugins, hpc/, ~/.config/kbtool/profiles/)."""
    from kbtool.cluster import scheduler

    found = scheduler.available_profiles()
    profiles = [scheduler.load_profile(name) for name in sorted(found)]
    if as_json:
        print(json.dumps([p.model_dump(mode="json") for p in profiles]))
        return
    for p in profiles:
        print(f"{p.name}: {p.scheduler}, {p.engine}, {p.arch}  {p.description}  ({p.source})")


@profiles_app.command("show")
def profiles_show(
    name: Annotated[str, typer.Argument(help="A profile name or a YAML file.")],
) -> None:
    """Print a validated site profile as YAML."""
    import yaml

    from kbtool.cluster import scheduler

    print(yaml.safe_dump(scheduler.load_profile(name).model_dump(mode="json"), sort_keys=False),
          end="")
