"""``kbtool tasks list|show``: what tasks there are, and one task in detail."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile, Sizes, tasks_app
from kbtool.errors import UsageError


@tasks_app.command("list")
def tasks_list(
    args: Annotated[list[str] | None, typer.Argument(help="SOURCE and key=value settings.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """List task ids, one per line (filtered by level, task_start, task_end)."""
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.task import catalog

    words, overrides = split_overrides(args or [])
    if len(words) > 1:
        raise UsageError(f"tasks list takes at most one SOURCE, got {' '.join(words)}")
    config = make_config(overrides, config_file, config_profile)
    for task in catalog.select(config, words[0] if words else None):
        print(task.id)


@tasks_app.command("show")
def tasks_show(
    task_id: Annotated[str, typer.Argument(help="Task id or task file.")],
    args: Annotated[list[str] | None, typer.Argument(help="key=value settings.")] = None,
    size: Sizes = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Show a task: its kind's fields, what it needs here (sizes, memory), its reference."""
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.evaluation.backend import backend_name, make_backend
    from kbtool.task import catalog

    _, overrides = split_overrides(args or [])
    config = make_config(overrides, config_file, config_profile, size)
    task = catalog.resolve(task_id, config)
    kind = catalog.kind_of(task)
    catalog.check_settings([task], config)
    if backend_name(config) == "local":  # inspecting needs no GPU
        config = config.model_copy(update={"device": "cpu"})
    backend = make_backend(config)
    try:
        info = backend.inspect(task, kind.configure(task, config))
    finally:
        backend.close()
    data = {"id": task.id, "source": task.source, "kind": task.kind, "name": task.name,
            "level": task.level, "number": task.number,
            "path": str(task.path) if task.path else None, **kind.fields(task), **info}
    if as_json:
        print(json.dumps(data, default=str))
        return
    for key, value in data.items():
        print(f"{key}: {value}")
    print("\n" + kind.describe(task))
