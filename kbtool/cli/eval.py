"""``kbtool eval``: one candidate, or a batch of them, checked and timed."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile, Sizes, app
from kbtool.errors import RunError, UsageError

if TYPE_CHECKING:
    from kbtool.config import Config
    from kbtool.task.model import Task

log = logging.getLogger(__name__)


@app.command("eval")
def eval_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="TASK (an id or a task file) and key=value settings.")] = None,
    solution: Annotated[Path | None, typer.Option(
        help="Candidate file: plain code (KernelBench: a file defining ModelNew), or a "
             "model's reply, whose code block is taken as `kbtool run` takes it.")] = None,
    solutions: Annotated[str | None, typer.Option(
        help="Batch mode: 'baseline' or a folder of solutions named after the tasks.")] = None,
    predictions: Annotated[Path | None, typer.Option(
        help="Other agents' predictions: a JSON-lines file (instance_id, model_name_or_path, "
             "model_patch) or KernelBench's folder of generated kernels; judged into a run "
             "directory (run_dir=), which a second call continues.")] = None,
    mode: Annotated[str | None, typer.Option(
        help="The baseline to compare against (KernelBench: eager or compile).")] = None,
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
    kbtool eval --predictions preds.jsonl|KERNELBENCH_RUNS_DIR run_dir=DIR

    Evaluates on this machine, or through the worker queue when worker_input_dir and
    worker_output_dir are set (eval_backend= picks another backend).
    """
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.evaluation.backend import make_backend
    from kbtool.evaluation.batch import evaluate_solution
    from kbtool.evaluation.result import Status
    from kbtool.task import catalog
    from kbtool.ui.display import print_result

    words, overrides = split_overrides(args or [])
    config = make_config(overrides, config_file, config_profile, size,
                         mode=mode, timer=timer, device=device)
    if config.tracker:  # set in a config file for runs, perhaps: said, not refused
        print("kbtool: warning: tracker= logs `kbtool run`s only; kbtool eval logs to no "
              "tracker", file=sys.stderr)
    if predictions is not None:
        if solution is not None or solutions is not None or words:
            raise UsageError("--predictions names its own tasks (each prediction's "
                             "instance_id); give no TASK, --solution or --solutions with it")
        _eval_predictions(config, predictions, as_json)
        return
    if solutions is not None:
        if solution is not None:
            raise UsageError("use either --solution (one task) or --solutions (batch), not both")
        tasks = [catalog.resolve(w, config) for w in words] if words else catalog.select(config)
        _eval_batch(config, tasks, solutions, output, as_json)
        return
    if len(words) != 1:
        raise UsageError("kbtool eval needs one TASK (an id or a problem file) and --solution "
                         "FILE, or --solutions baseline|DIR for a batch")
    if solution is None:
        raise UsageError("missing --solution FILE (or --solutions baseline|DIR for a batch)")
    if not solution.is_file():
        raise UsageError(f"solution file not found: {solution}")
    task = catalog.resolve(words[0], config)
    catalog.check_settings([task], config)
    backend = make_backend(config)
    try:
        result = evaluate_solution(backend, task, solution,
                                   catalog.kind_of(task).configure(task, config))
    finally:
        backend.close()
    if as_json:
        print(result.model_dump_json())
    elif result.status != Status.internal_error:
        print_result(result)
    if result.status == Status.internal_error:
        log.debug("kbtool's error while judging %s:\n%s", task.id, result.error)
        raise RunError(f"kbtool failed while judging {task.id} (no verdict on the candidate): "
                       f"{error_line(result.error)}")


def _eval_batch(config: Config, tasks: list[Task], solutions: str, output: Path | None,
                as_json: bool) -> None:
    from kbtool.evaluation.backend import make_backend
    from kbtool.evaluation.batch import run_batch
    from kbtool.evaluation.result import Status
    from kbtool.ui.display import print_batch_table, progress_line

    out_path = output or Path("eval-results") / f"eval-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    backend = make_backend(config)
    try:
        outcome = run_batch(backend, config, tasks, solutions, out_path,
                            lambda task, res: progress_line(task.id, res))
    finally:
        backend.close()
    if as_json:
        print(json.dumps({"results": [r.model_dump(mode="json") for r in outcome.results],
                          "skipped": outcome.skipped}))
    else:
        print_batch_table(outcome.results, outcome.skipped)
        print(f"results: {out_path}", file=sys.stderr)
    failed = [r for r in outcome.results if r.status == Status.internal_error]
    if failed:
        raise RunError(f"kbtool failed while judging {len(failed)} of {len(outcome.results)} "
                       f"candidates (no verdict; first, {failed[0].task}: "
                       f"{error_line(failed[0].error)})")


def _eval_predictions(config: Config, source: Path, as_json: bool) -> None:
    from kbtool.evaluation.result import Status
    from kbtool.predictions.files import read_predictions
    from kbtool.predictions.judge import judge
    from kbtool.ui.display import print_predictions

    outcome = judge(config, source, read_predictions(source, config))
    if as_json:
        print(json.dumps(outcome.as_json()))
    else:
        print_predictions(outcome)
    for task_id, reason in outcome.skipped.items():
        print(f"kbtool: {task_id} was skipped, its predictions not judged: "
              f"{reason.splitlines()[0]}", file=sys.stderr)
    failed = [(s, r) for s in outcome.slots
              if (r := outcome.results.get(s.key)) is not None
              and r.status == Status.internal_error]
    if failed:
        slot, result = failed[0]
        raise RunError(f"kbtool failed while judging {len(failed)} of {len(outcome.slots)} "
                       f"predictions (no verdict; the next call judges them again; first, "
                       f"{slot.entry.where}: {error_line(result.error)})")


def error_line(error: str | None) -> str:
    """The last line of an error's traceback (the exception), without the output's tail."""
    head = (error or "").split("\n--- ", 1)[0]
    lines = [line.strip() for line in head.splitlines() if line.strip()]
    return lines[-1] if lines else "an unknown error"
