"""Find tasks: by id, by the file that defines one, or by level/task_start/task_end of a source."""

from __future__ import annotations

from pathlib import Path

from kbtool.config import Config
from kbtool.errors import UsageError, unknown
from kbtool.plugin import registry
from kbtool.task.kind import TaskKind
from kbtool.task.model import Task


def source_tasks(name: str, config: Config) -> list[Task]:
    return registry.TASK_SOURCES.get(name).tasks(config)


def kind_of(task: Task) -> TaskKind:
    """The task's kind; a one-line error when no plugin provides it."""
    kinds = registry.TASK_KINDS.all()
    if task.kind not in kinds:
        raise unknown("task kind", task.kind, kinds,
                      hint=f"task {task.id} needs a plugin that registers it")
    return kinds[task.kind]


def task_from_file(path: Path) -> Task:
    """The task a file defines, read by the first kind that reads such files."""
    if not path.is_file():
        raise UsageError(f"problem file not found: {path}")
    for kind in registry.TASK_KINDS.all().values():
        task = kind.task_from_file(path.resolve())
        if task is not None:
            return task
    raise UsageError(f"no task kind reads {path} as a task")


def resolve(word: str, config: Config) -> Task:
    """A task id (``builtin/1/2_ReLU``, or a unique prefix such as ``builtin/1/2``) or a path."""
    path = Path(word)
    if word.endswith(".py") or path.is_file():
        return task_from_file(path)
    source, _, _ = word.partition("/")
    tasks = source_tasks(source, config)
    exact = [t for t in tasks if t.id == word]
    if exact:
        return exact[0]
    # "builtin/1/2" names task number 2 of level 1; "builtin/1/2_Re" a prefix of the id.
    matches = [t for t in tasks if t.id.startswith(word)]
    numbered = [t for t in matches if t.id.startswith(word + "_")]
    if len(numbered) == 1:
        return numbered[0]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"task {word!r} is ambiguous: {', '.join(t.id for t in matches[:5])}")
    raise unknown("task", word, [t.id for t in tasks] if len(tasks) < 5000 else [],
                  hint=f"see: kbtool tasks list {source}")


def select(config: Config, source: str | None = None) -> list[Task]:
    """Tasks of a source filtered by ``level``, ``task_start`` and ``task_end`` (inclusive),
    the first ``max_items`` of them."""
    tasks = source_tasks(source or config.source, config)
    if config.level is not None:
        tasks = [t for t in tasks if t.level == config.level]
    if config.task_start is not None:
        tasks = [t for t in tasks if t.number is not None and t.number >= config.task_start]
    if config.task_end is not None:
        tasks = [t for t in tasks if t.number is not None and t.number <= config.task_end]
    return tasks if config.max_items is None else tasks[:config.max_items]


def check_settings(tasks: list[Task], config: Config) -> None:
    """Settings that apply to none of the tasks (a misspelled size name) are an error; each
    kind judges its own tasks."""
    by_kind: dict[str, list[Task]] = {}
    for task in tasks:
        by_kind.setdefault(task.kind, []).append(task)
    for members in by_kind.values():
        kind_of(members[0]).check_settings(members, config)
