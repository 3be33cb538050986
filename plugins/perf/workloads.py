"""A perf task's workloads: the visible ones (shown to the agent) and the hidden ones (never
shown), their files, and what makes a workload unusable before anything runs.

A workload is a file (``load``, ``setup``, ``experiment``, ``store_result``,
``check_equivalence``) and, optionally, ``params``: module-level names of the file replaced
by other values before ``setup(seed)``, so one generator serves with other sizes or another
vocabulary.  A hidden workload is usually a visible workload's file with other ``params``
(the agent sees the file, never the values), or a file of its own that is never shown.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from kbtool.task.model import Task, TaskRefused
from kbtool_plugins.perf.judge import load_workload
from kbtool_plugins.perf.settings import PerfPayload, Workload

FUNCTIONS = ("load", "setup", "experiment", "store_result", "check_equivalence")


def payload_of(task: Task) -> PerfPayload:
    return PerfPayload.model_validate(task.payload)


def task_dir(task: Task) -> Path | None:
    return task.path.parent if task.path is not None else None


def source_of(task: Task, workload: Workload) -> str:
    """A workload's code (inline in a packed task, else from its file); a one-line
    ``TaskRefused`` when the file is not there."""
    if workload.source is not None:
        return workload.source
    folder = task_dir(task)
    assert workload.file is not None
    path = (folder / workload.file) if folder is not None else Path(workload.file)
    try:
        return path.read_text()
    except OSError as exc:
        raise TaskRefused(f"task {task.id}: workload {workload.name}: cannot read "
                          f"{path} ({exc.strerror or exc})") from None


def workload_sources(task: Task, hidden: bool = False) -> dict[str, str]:
    """Each visible workload's code by name (with ``hidden``: every workload's)."""
    payload = payload_of(task)
    chosen = payload.all_workloads() if hidden else payload.workloads
    return {w.name: source_of(task, w) for w in chosen}


def problems(task: Task) -> list[str]:
    """What makes the task's workloads unusable, one line each, found without running the
    library: a file that is missing or does not parse, a function it lacks, a ``params``
    name the file does not define."""
    payload = payload_of(task)
    found = []
    for workload in payload.all_workloads():
        where = f"workload {workload.name}"
        try:
            code = source_of(task, workload)
        except TaskRefused as exc:
            found.append(str(exc).split(": ", 1)[1])
            continue
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            found.append(f"{where}: line {exc.lineno}: {exc.msg}")
            continue
        defined = {n.name for n in tree.body
                   if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        assigned = {t.id for n in tree.body if isinstance(n, (ast.Assign, ast.AnnAssign))
                    for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                    if isinstance(t, ast.Name)}
        missing = [f for f in FUNCTIONS if f not in defined]
        if missing:
            found.append(f"{where}: the file defines no {', '.join(missing)} (a workload "
                         f"needs {', '.join(FUNCTIONS)})")
        unknown = sorted(set(workload.params) - assigned)
        if unknown:
            found.append(f"{where}: params {', '.join(unknown)} are not module-level names "
                         "of its file (params replace such names)")
    return found


@dataclass
class Bench:
    """The workloads as one check uses them: files in its ``bench`` folder, and each one's
    module (with its params) for ``check_equivalence`` in the judge's process."""

    folder: Path
    items: list[BenchWorkload] = field(default_factory=list)

    @classmethod
    def write(cls, task: Task, folder: Path) -> Bench:
        folder.mkdir(exist_ok=True)
        bench = cls(folder)
        payload = payload_of(task)
        hidden_index = 0
        for workload in payload.all_workloads():
            hidden = workload in payload.hidden_workloads
            if hidden:
                hidden_index += 1
            path = folder / f"{workload.name}.py"
            path.write_text(source_of(task, workload))
            module = load_workload(path)
            for name, value in workload.params.items():
                setattr(module, name, value)
            bench.items.append(BenchWorkload(
                workload.name, path, dict(workload.params), hidden, module,
                f"hidden workload #{hidden_index}" if hidden else f"workload {workload.name}"))
        return bench

    @property
    def hidden(self) -> list[BenchWorkload]:
        return [w for w in self.items if w.hidden]

    @property
    def visible(self) -> list[BenchWorkload]:
        return [w for w in self.items if not w.hidden]


@dataclass
class BenchWorkload:
    name: str
    path: Path
    params: dict[str, Any]
    hidden: bool
    module: ModuleType
    label: str          # how messages the agent may read name it (a hidden one by number)

    def equivalent(self, expected: Any, got: Any) -> str | None:
        """Why ``got`` is not equivalent to ``expected`` (None: it is)."""
        try:
            self.module.check_equivalence(expected, got)
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc)[:500]}"
        return None
