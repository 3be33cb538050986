"""The task model and the interfaces of task sources and task kinds.

A task names a problem and the *kind* of check it needs.  KernelBench problems are the
kind ``kernelbench`` (reference ``Model``, ``get_inputs``, ``get_init_inputs``; candidates
define ``ModelNew``).  Later kinds plug in through ``register_task_kinds`` with their own
payload in ``meta`` (a repository task: repo, file, method, test ids; a performance commit:
parent and human commits, the benchmark command) and their own ``check``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kbtool.config.settings import Config
    from kbtool.sandbox.isolation import Reporter
    from kbtool.timing.base import Timer


@dataclass(frozen=True)
class Task:
    id: str                      # "<source>/<level>/<file stem>", unique across sources
    source: str
    name: str
    kind: str = "kernelbench"
    path: Path | None = None
    level: int | None = None
    number: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class TaskSource(Protocol):
    description: str

    def tasks(self, config: Config) -> list[Task]:
        """All tasks of this source, sorted by level and number."""
        ...


class TaskKind(Protocol):
    """How one kind of task is checked.  Every method runs in an isolated child process
    (``kbtool.sandbox.isolation``): candidate code is never run in the caller's process."""

    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        """Metadata (sizes, dtype, estimated memory); raise ``TaskRefused`` for a task that
        cannot run here."""
        ...

    def baseline(self, task: Task, config: Config, mode: str, timer: Timer,
                 report: Reporter) -> dict[str, Any]:
        """Time the reference under ``mode``; return ``{"timing": TimingStats dict}``."""
        ...

    def check(self, task: Task, solution: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        """Load, check and time a candidate; return fields of ``EvalResult``."""
        ...

    def side_by_side(self, task: Task, solution: Path, config: Config, timer: Timer,
                     report: Reporter) -> dict[str, Any]:
        """Time reference and candidate alternately in one process; return ``baseline_ms``
        and ``runtime_ms`` (used to re-check a suspiciously large speedup)."""
        ...


class TaskRefused(Exception):
    """The task cannot run here (too large for this machine, bad size override)."""
