"""``kbtool tasks list|show|check``: what tasks there are, one task in detail, and whether
tasks are sound (for their authors)."""

from __future__ import annotations

import json
import sys
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


@tasks_app.command("check")
def tasks_check(
    args: Annotated[list[str], typer.Argument(help="Task ids (or task files), key=value "
                                                   "settings.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Check tasks themselves, for their author: each loads here, its reference passes its
    own check, and what its kind checks besides (perf: every workload on the baseline and
    the human patch, the package's tests on both).  One line per problem; exit 2 when any
    task has one.  Runs on this machine."""
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.evaluation.evaluator import Evaluator
    from kbtool.task import catalog

    words, overrides = split_overrides(args)
    if not words:
        raise UsageError("tasks check needs one or more task ids")
    config = make_config(overrides, config_file, config_profile)
    tasks = [catalog.resolve(word, config) for word in words]
    catalog.check_settings(tasks, config)
    audits = []
    with Evaluator(config) as evaluator:
        for task in tasks:
            audit = evaluator.audit(task, catalog.kind_of(task).configure(task, config))
            audits.append(audit)
            if not as_json:
                for line in audit.checked:
                    print(f"{task.id}: ok: {line}")
                for line in audit.problems:
                    print(f"{task.id}: PROBLEM: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps([a.model_dump() for a in audits]))
    broken = [a.task for a in audits if a.problems]
    if broken:
        raise typer.Exit(2)
