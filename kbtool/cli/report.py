"""``kbtool report`` and ``kbtool monitor``: what a run achieved, and a run followed live."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbtool.cli.app import app
from kbtool.errors import UsageError


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
    from kbtool.runs.layout import RunLayout

    layout = RunLayout(run_dir)
    if not layout.events.is_file() and not layout.config.is_file():
        raise UsageError(f"{run_dir} is not a kbtool run directory (no events.jsonl or "
                         f"config.yaml)")
    from kbtool.monitor.app import run_monitor

    run_monitor(run_dir, interval=max(0.05, interval))
