"""The ``kbtool`` command line (Typer).  Commands stay thin: they parse, call, print."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kbtool import __version__
from kbtool.config.settings import Config, config_as_yaml, load_config, split_overrides
from kbtool.errors import KbtoolError
from kbtool.evaluation.batch import run_batch
from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.remote import evaluate_remote, queue_for
from kbtool.plugin import manager as plugins
from kbtool.search import run
from kbtool.task import catalog
from kbtool.ui.display import print_batch_table, print_result, print_run_summary, progress_line
from kbtool.workers.jobqueue import Queue
from kbtool.workers.worker import Worker, status

app = typer.Typer(
    name="kbtool",
    help="Search for faster GPU kernels with LLM agents, and measure them honestly.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
tasks_app = typer.Typer(help="List and inspect tasks.", no_args_is_help=True)
config_app = typer.Typer(help="Show the resolved configuration.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(config_app, name="config")
worker_app = typer.Typer(help="Serve and watch the shared-directory evaluation queue.",
                         no_args_is_help=True)
app.add_typer(worker_app, name="worker")
submit_app = typer.Typer(help="Submit worker pools and runs to a batch scheduler (Slurm).",
                         no_args_is_help=True)
jobs_app = typer.Typer(help="Status of the submitted kbtool jobs; cancel them.")
profiles_app = typer.Typer(help="HPC site profiles (hpc/*.yaml, plugins, your own).",
                           no_args_is_help=True)
app.add_typer(submit_app, name="submit")
app.add_typer(jobs_app, name="jobs")
app.add_typer(profiles_app, name="profiles")

ConfigFile = Annotated[Path | None, typer.Option(
    "--config", help="YAML config file (layered over ~/.config/kbtool/config.yaml, ./kbtool.yaml).")]
ConfigProfile = Annotated[str | None, typer.Option(
    "--config-profile", help="Named profile from the config files (built in: quick, publish).")]
Sizes = Annotated[list[str] | None, typer.Option(
    "--size", help="Override a module-level size constant, e.g. --size batch_size=16.")]


def _config(overrides: dict[str, Any], config_file: Path | None, profile: str | None,
            sizes: list[str] | None = None, **options: Any) -> Config:
    overrides = dict(overrides)
    for item in sizes or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise KbtoolError(f"--size takes NAME=VALUE, got {item!r}")
        overrides[f"sizes.{name}"] = value
    overrides.update({k: v for k, v in options.items() if v is not None})
    return load_config(overrides, config_file, profile)


@app.command("eval")
def eval_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="TASK (an id or a problem file) and key=value settings.")] = None,
    solution: Annotated[Path | None, typer.Option(help="Candidate file defining ModelNew.")] = None,
    solutions: Annotated[str | None, typer.Option(
        help="Batch mode: 'baseline' or a folder of solutions named after the tasks.")] = None,
    mode: Annotated[str | None, typer.Option(help="Baseline: eager or compile.")] = None,
    timer: Annotated[str | None, typer.Option(help="Timing backend (see kbtool plugins).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    output: Annotated[Path | None, typer.Option(
        help="Batch mode: JSON-lines file for the results.")] = None,
    size: Sizes = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Check a candidate's correctness and time it against the reference.

    kbtool eval TASK --solution FILE [--mode eager|compile] [--timer NAME] [--device cpu|cuda] [--json]
    kbtool eval level=1 --solutions baseline|DIR [--mode eager|compile]
    """
    words, overrides = split_overrides(args or [])
    config = _config(overrides, config_file, config_profile, size,
                     mode=mode, timer=timer, device=device)
    if solutions is not None:
        if solution is not None:
            raise KbtoolError("use either --solution (one task) or --solutions (batch), not both")
        tasks = [catalog.resolve(w, config) for w in words] if words else catalog.select(config)
        _eval_batch(config, tasks, solutions, output, as_json)
        return
    if len(words) != 1:
        raise KbtoolError("kbtool eval needs one TASK (an id or a problem file) and --solution "
                          "FILE, or --solutions baseline|DIR for a batch")
    if solution is None:
        raise KbtoolError("missing --solution FILE (or --solutions baseline|DIR for a batch)")
    if not solution.is_file():
        raise KbtoolError(f"solution file not found: {solution}")
    task = catalog.resolve(words[0], config)
    if config.worker_input_dir or config.worker_output_dir:
        result = evaluate_remote(queue_for(config), task, solution, config)
    else:
        with Evaluator(config) as evaluator:
            result = evaluator.evaluate(task, solution)
    if as_json:
        print(result.model_dump_json())
    else:
        print_result(result)


def _eval_batch(config: Config, tasks: list, solutions: str, output: Path | None,
                as_json: bool) -> None:
    out_path = output or Path("eval-results") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    with Evaluator(config) as evaluator:
        outcome = run_batch(evaluator, tasks, solutions, out_path,
                            lambda task, res: progress_line(task.id, res))
    if as_json:
        print(json.dumps({"results": [r.model_dump(mode="json") for r in outcome.results],
                          "skipped": outcome.skipped}))
    else:
        print_batch_table(outcome.results, outcome.skipped)
        print(f"results: {out_path}", file=sys.stderr)


@app.command("run")
def run_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="TASK ids or problem files, and key=value settings (level=1 num_samples=10 ...).")]
        = None,
    resume_dir: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the run in RUN_DIR; nothing completed is repeated.")] = None,
    size: Sizes = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Search for faster kernels with an LLM over many tasks (parallel tree search).

    kbtool run [TASK ...] [level=1 task_start=1 task_end=5] model_name=openai/gpt-4o num_samples=10
    kbtool run --resume RUN_DIR
    """
    words, overrides = split_overrides(args or [])
    if resume_dir is not None:
        if words:
            raise KbtoolError("--resume takes the run's own tasks; do not name tasks")
        summary = run.resume(resume_dir, overrides)
    else:
        config = _config(overrides, config_file, config_profile, size)
        summary = run.start(config, words)
    if summary.get("dry_run"):
        print(f"dry run: {len(summary['tasks'])} tasks, at most {summary['max_llm_calls']} LLM "
              f"calls; prompts and plan written, nothing spent")
        return
    print_run_summary(summary)


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
    words, overrides = split_overrides(args or [])
    if words:
        raise KbtoolError(f"worker serve takes key=value settings, not {words[0]!r}")
    config = _config(overrides, config_file, config_profile)
    worker = Worker(config, queue_for(config))
    print(f"kbtool worker {worker.id}: serving {config.worker_input_dir}", file=sys.stderr)
    done = worker.serve(max_jobs=max_jobs, idle_exit_s=idle_exit)
    print(f"kbtool worker {worker.id}: stopped after {done} jobs", file=sys.stderr)


@worker_app.command("status")
def worker_status(
    input_dir: Annotated[Path, typer.Argument(help="The queue's worker_input_dir.")],
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", help="The queue's worker_output_dir (default: beside it).")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Workers alive, queue depth, throughput and failures of a queue."""
    if not (input_dir / "pending").is_dir():
        raise KbtoolError(f"{input_dir} is not a kbtool queue (no pending/ folder)")
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


@app.command("report")
def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR",
        help="Run directories (a kbtool run's run_dir); several are reported side by side.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print one JSON object (see docs/report.md) instead of tables.")] = False,
    csv_dir: Annotated[Path | None, typer.Option(
        "--csv", help="Write tasks.csv, phases.csv, phase_summary.csv, fast_p.csv to DIR.")] = None,
    export_dir: Annotated[Path | None, typer.Option(
        "--export", help="Copy each task's best solution to DIR/<task id, / as _>.py.")] = None,
    plots_dir: Annotated[Path | None, typer.Option(
        "--plots", help="Write the figures to DIR, PNG and PDF.")] = None,
) -> None:
    """Report a run: fast_p, geometric-mean speedups, per-phase progress, errors and cost.

    kbtool report RUN_DIR [RUN_DIR ...] [--json] [--csv DIR] [--export DIR] [--plots DIR]
    """
    from kbtool.report import build as report

    report.main(run_dirs, as_json=as_json, csv_dir=csv_dir, export_dir=export_dir,
                plots_dir=plots_dir)


@app.command("monitor")
def monitor_command(
    run_dir: Annotated[Path, typer.Argument(help="The run directory (a kbtool run's run_dir).")],
    interval: Annotated[float, typer.Option(
        help="Seconds between two reads of the event log.")] = 1.0,
) -> None:
    """Follow a run live in the terminal: tasks, search trees, candidates, LLM use.

    kbtool monitor RUN_DIR [--interval 1.0]   (keys: arrows, Enter, Esc, / filter, f status, q)
    """
    if not (run_dir / "events.jsonl").is_file() and not (run_dir / "config.yaml").is_file():
        raise KbtoolError(f"{run_dir} is not a kbtool run directory (no events.jsonl or "
                          f"config.yaml)")
    from kbtool.monitor.app import run_monitor

    run_monitor(run_dir, interval=max(0.05, interval))


@worker_app.command("start")
def worker_start(
    engine: Annotated[str, typer.Option(
        help="local, docker, podman, podman-hpc, apptainer or singularity (plugins add more).")],
    arch: Annotated[str, typer.Option(
        help="GPU generation: Ampere or Hopper (GPU access, TORCH_CUDA_ARCH_LIST); cpu: none.")],
    args: Annotated[list[str] | None, typer.Argument(
        help="worker_input_dir=IN worker_output_dir=OUT and other key=value settings.")] = None,
    image: Annotated[str | None, typer.Option(
        help="Image (default: kbtool-worker:VERSION; apptainer: the .sif file); "
             "rootfs:DIR (podman, apptainer): a directory as read-only root, for testing and "
             "air-gapped hosts.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command; run nothing.")]
        = False,
    detach: Annotated[bool, typer.Option(help="Start in the background (docker, podman).")]
        = False,
    name: Annotated[str | None, typer.Option(help="Container name (docker, podman).")] = None,
    scratch: Annotated[Path | None, typer.Option(
        help="Disk-backed scratch for /tmp instead of a tmpfs (apptainer: --workdir).")] = None,
    share_network: Annotated[bool, typer.Option(
        help="Keep the host network (only where a site forbids network namespaces).")] = False,
    gpu_index: Annotated[str | None, typer.Option(
        help="The GPU this worker uses (CUDA_VISIBLE_DEVICES), e.g. $SLURM_LOCALID.")] = None,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after this many jobs.")] = None,
    idle_exit: Annotated[float | None, typer.Option(
        help="Exit after this many seconds without a job.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Start `kbtool worker serve` in a container (see docs/containers.md).

    kbtool worker start --engine podman --arch Hopper [--image I] [--dry-run]
        worker_input_dir=IN worker_output_dir=OUT [key=value ...]
    """
    from kbtool.cluster import containers

    words, overrides = split_overrides(args or [])
    if words:
        raise KbtoolError(f"worker start takes key=value settings, not {words[0]!r}")
    runner = containers.get_engine(engine)
    containers.cuda_arch_list(arch)
    config = _config(overrides, config_file, config_profile)
    options = [*(["--max-jobs", str(max_jobs)] if max_jobs is not None else []),
               *(["--idle-exit", str(idle_exit)] if idle_exit is not None else []),
               *(["--config-profile", config_profile] if config_profile else [])]
    spec = containers.worker_spec(config, [a for a in args or [] if a not in words], arch=arch,
                                  image=image, name=name, detach=detach, scratch=scratch,
                                  share_network=share_network, serve_options=options,
                                  config_file=config_file, gpu_index=gpu_index)
    containers.start_worker(runner, spec, dry_run=dry_run)


image_app = typer.Typer(help="Build the containerized worker's image.", no_args_is_help=True)
app.add_typer(image_app, name="image")


@image_app.command("build")
def image_build(
    engine: Annotated[str, typer.Option(help="docker, podman, podman-hpc, apptainer, ...")],
    tag: Annotated[str | None, typer.Option(
        help="Image tag (apptainer: the .sif file to write).")] = None,
    context: Annotated[Path | None, typer.Option(
        help="The kbtool checkout to build from (default: this one).")] = None,
    build_arg: Annotated[list[str] | None, typer.Option(
        "--build-arg", help="KEY=VALUE for the image definition (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the commands; run nothing.")]
        = False,
) -> None:
    """Build the worker image from containers/ (CUDA devel base, PyTorch, Triton, kbtool)."""
    from kbtool.cluster import containers

    code = containers.build_image(containers.get_engine(engine), tag, context, build_arg,
                                  dry_run=dry_run)
    if code:
        raise typer.Exit(code)


SiteProfileOpt = Annotated[str, typer.Option(
    "--profile", help="Site profile: a name (kbtool profiles list) or a YAML file.")]


def _submit(profile_name: str, kind: str, args: list[str], dry_run: bool) -> None:
    from kbtool_plugins import slurm

    from kbtool.cluster import scheduler

    profile = scheduler.load_profile(profile_name)
    words, options, settings = scheduler.split_options(args)
    if kind == "workers":
        if words:
            raise KbtoolError(f"submit workers takes key=value options, not {words[0]!r}")
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
    if profile.scheduler != "slurm":
        print(f"profile {profile.name!r} has no scheduler; run the job yourself: bash {path}")
        return
    if profile.scheduler not in plugins.collect("register_schedulers"):
        raise KbtoolError(f"no scheduler plugin {profile.scheduler!r} is loaded")
    job_id = slurm.Slurm().submit(path)
    slurm.save_record({"id": job_id, **meta, "script": str(path), "submitted": time.time()})
    print(job_id)
    print(f"submitted {meta['name']} as job {job_id}; logs: "
          f"{slurm.log_path(meta['log'], meta['name'], job_id, None)}", file=sys.stderr)


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
    all_jobs: Annotated[bool, typer.Option("--all", help="Include jobs that have ended.")] = True,
) -> None:
    """Status of the kbtool jobs you submitted: one batched query per tick; log paths.

    kbtool jobs [--json] [--watch];  kbtool jobs cancel [JOBID ...]
    """
    if ctx.invoked_subcommand is not None:
        return
    from kbtool_plugins import slurm

    sched = slurm.Slurm()
    delay, last = 5.0, None
    while True:
        rows, source = slurm.job_table(sched, slurm.load_records())
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
    """Cancel kbtool jobs (scancel; workers drain on SIGTERM)."""
    from kbtool_plugins import slurm

    sched = slurm.Slurm()
    if not job_ids:
        rows, _ = slurm.job_table(sched, slurm.load_records())
        job_ids = [r["id"] for r in rows if not r["done"]]
    if not job_ids:
        print("no kbtool job to cancel")
        return
    sched.cancel(job_ids)
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


@tasks_app.command("list")
def tasks_list(
    args: Annotated[list[str] | None, typer.Argument(help="SOURCE and key=value settings.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """List task ids, one per line (filtered by level, task_start, task_end)."""
    words, overrides = split_overrides(args or [])
    if len(words) > 1:
        raise KbtoolError(f"tasks list takes at most one SOURCE, got {' '.join(words)}")
    config = _config(overrides, config_file, config_profile)
    for task in catalog.select(config, words[0] if words else None):
        print(task.id)


@tasks_app.command("show")
def tasks_show(
    task_id: Annotated[str, typer.Argument(help="Task id or problem file.")],
    args: Annotated[list[str] | None, typer.Argument(help="key=value settings.")] = None,
    size: Sizes = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Show a task: metadata, size constants, memory need and the reference code."""
    _, overrides = split_overrides(args or [])
    config = _config(overrides, config_file, config_profile, size)
    task = catalog.resolve(task_id, config)
    with Evaluator(config.model_copy(update={"device": "cpu"})) as evaluator:
        info = evaluator.inspect(task)
    data = {"id": task.id, "source": task.source, "kind": task.kind, "name": task.name,
            "level": task.level, "number": task.number, "path": str(task.path), **info}
    if as_json:
        print(json.dumps(data))
        return
    for key, value in data.items():
        print(f"{key}: {value}")
    if task.path is not None:
        print("\n" + task.path.read_text())


@app.command("plugins")
def plugins_command(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the loaded plugins with their versions and the hooks they implement."""
    infos = plugins.plugin_infos()
    if as_json:
        print(json.dumps([vars(i) for i in infos], indent=2))
        return
    for info in infos:
        origin = "built-in" if info.builtin else "third-party"
        print(f"{info.name} {info.version} ({origin}): {', '.join(info.hooks)}")


@config_app.command("show")
def config_show(
    args: Annotated[list[str] | None, typer.Argument(help="key=value settings.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Print the resolved configuration as YAML."""
    words, overrides = split_overrides(args or [])
    if words:
        raise KbtoolError(f"config show takes key=value settings, not {words[0]!r}")
    print(config_as_yaml(_config(overrides, config_file, config_profile)), end="")


@app.command("version")
def version_command() -> None:
    """Print kbtool's version."""
    print(__version__)


def main() -> None:
    plugins.load_plugins()
    plugins.pm.hook.register_commands(cli=app)
    try:
        app(prog_name="kbtool")  # Typer exits 2 on usage errors, 0 on success
    except KbtoolError as exc:
        print(f"kbtool: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("kbtool: interrupted", file=sys.stderr)
        sys.exit(130)
