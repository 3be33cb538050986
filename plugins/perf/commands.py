"""``kbtool perf prepare``: fill the cache with what perf tasks need (for workers that have
no network: run it where PyPI is reachable, with the cache_dir the workers will use)."""

from __future__ import annotations

from typing import Annotated

import typer

perf_app = typer.Typer(help="Performance-commit tasks (the perf kind).", no_args_is_help=True)


@perf_app.command("prepare")
def prepare(
    args: Annotated[list[str] | None, typer.Argument(
        help="Task ids (default: every perf task) and key=value settings.")] = None,
) -> None:
    """Download the releases, make the human patches and the venvs, into cache_dir."""
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.task import catalog
    from kbtool_plugins.perf import releases
    from kbtool_plugins.perf.kind import payload_of, task_dir

    words, overrides = split_overrides(args or [])
    config = make_config(overrides, None, None)
    tasks = [catalog.resolve(w, config) for w in words] if words else \
        catalog.select(config, "perf")
    for task in tasks:
        if task.kind != "perf":
            continue
        where = releases.prepare(payload_of(task), config, task_dir(task))
        print(f"{task.id}: {where.baseline_tree.parent.name} (baseline), "
              f"{where.human_tree.parent.name} (human)")
