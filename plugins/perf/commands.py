"""``kbtool perf prepare``: fill the cache with what perf tasks need (for workers that have
no network: run it where PyPI and the tasks' repositories are reachable, with the cache_dir
the workers will use).  ``kbtool perf build``: perf tasks from a file of commits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

perf_app = typer.Typer(help="Performance-commit tasks (the perf kind).", no_args_is_help=True)


@perf_app.command("prepare")
def prepare(
    args: Annotated[list[str] | None, typer.Argument(
        help="Task ids (default: every perf task) and key=value settings.")] = None,
) -> None:
    """Download the releases, clone the repositories, make the trees, the human patches and
    the venvs, into cache_dir."""
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
        print(f"{task.id}: {where.baseline_name} (baseline), {where.human_name} (human)")


@perf_app.command("build")
def build(
    commits: Annotated[Path, typer.Argument(
        help="A file of commit hashes of the repository, one a line (the first word of a "
             "line; # comments); short hashes are resolved, ambiguous ones refused.")],
    repo: Annotated[str, typer.Option(help="The git repository: a URL or a local clone.")],
    out: Annotated[Path, typer.Option(help="The folder to write the task files into "
                                           "(use it as perf_tasks_dir).")],
    args: Annotated[list[str] | None, typer.Argument(help="key=value settings.")] = None,
    workload: Annotated[list[str] | None, typer.Option(
        help="A workload file every task gets (shown to the agent); repeat for more.")]
        = None,
    hidden_workload: Annotated[list[str] | None, typer.Option(
        help="A hidden workload: FILE, or FILE:{json params} (a visible workload's file with "
             "other values); repeat for more.")] = None,
    template: Annotated[Path | None, typer.Option(
        help="A partial task file: the fields every task gets (workloads relative to it).")]
        = None,
    module: Annotated[str | None, typer.Option(help="The package's import name (default: "
                                                    "the one package in the tree).")] = None,
    package: Annotated[str | None, typer.Option(help="The project's name (default: the "
                                                     "module).")] = None,
    name: Annotated[str | None, typer.Option(help="Task names are NAME-<10 digits of the "
                                                  "commit> (default: the package).")] = None,
    tests: Annotated[list[str] | None, typer.Option(
        help="pytest arguments for the package's tests (repeat).")] = None,
    test_requirement: Annotated[list[str] | None, typer.Option(
        help="What the tests need besides the package (pip; default pytest).")] = None,
    prompt_file: Annotated[list[str] | None, typer.Option(
        help="Source files shown to the agent (default: the package files the commit "
             "changes).")] = None,
    image_baseline: Annotated[str | None, typer.Option(
        help="The baseline's container image; {commit} and {baseline} are the hashes.")]
        = None,
    image_human: Annotated[str | None, typer.Option(
        help="The human version's container image (with --image-baseline).")] = None,
) -> None:
    """Perf tasks from a file of commits of one git repository: each commit the human
    version, its first parent the baseline; one task file per commit."""
    from kbtool.cli.common import make_config
    from kbtool.config import split_overrides
    from kbtool.errors import UsageError
    from kbtool_plugins.perf.build import build as build_tasks
    from kbtool_plugins.perf.build import workload_entry

    words, overrides = split_overrides(args or [])
    if words:
        raise UsageError(f"perf build: unexpected argument {words[0]!r} (settings are "
                         "key=value)")
    if (image_baseline is None) != (image_human is None):
        raise UsageError("perf build: give --image-baseline and --image-human together")
    config = make_config(overrides, None, None)
    options: dict[str, Any] = {
        "workloads": [workload_entry(w, False) for w in workload or []],
        "hidden_workloads": [workload_entry(w, True) for w in hidden_workload or []],
        "module": module, "package": package, "tests": tests,
        "test_requirements": test_requirement, "prompt_files": prompt_file,
        "image": {"baseline": image_baseline, "human": image_human} if image_baseline
        else None}
    built = build_tasks(config, commits, repo, out, options, template, name)
    for task in built:
        data = task.data
        print(f"perf/{task.name}: {data['baseline_commit'][:12]} -> {data['commit'][:12]} "
              f"changes {', '.join(task.files)}: {task.subject}")
    print(f"{len(built)} task files written to {out} (kbtool tasks check TASK "
          f"perf_tasks_dir={out})")
