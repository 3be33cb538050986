"""``kbtool run``: the agent's search over many tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile, Sizes, app
from kbtool.errors import UsageError


@app.command("run")
def run_command(
    args: Annotated[list[str] | None, typer.Argument(
        help="TASK ids or task files, and key=value settings (level=1 num_samples=10 ...).")]
        = None,
    resume_dir: Annotated[Path | None, typer.Option(
        "--resume", help="Continue the run in RUN_DIR; nothing completed is repeated.")] = None,
    size: Sizes = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Search for faster code with an LLM over many tasks (parallel tree search).

    kbtool run [TASK ...] [level=1 task_start=1 task_end=5] model_name=openai/gpt-4o num_samples=10
    kbtool run --resume RUN_DIR
    """
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.search import run
    from kbtool.ui.display import print_run_summary

    words, overrides = split_overrides(args or [])
    if resume_dir is not None:
        if words:
            raise UsageError("--resume takes the run's own tasks; do not name tasks")
        summary = run.resume(resume_dir, overrides)
    else:
        config = make_config(overrides, config_file, config_profile, size)
        summary = run.start(config, words)
    if isinstance(summary, dict):  # a dry run's plan
        print(f"dry run: {len(summary['tasks'])} tasks, at most {summary['max_llm_calls']} LLM "
              f"calls; prompts and plan written, nothing spent")
        return
    print_run_summary(summary)
