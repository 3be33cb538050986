"""Find tasks: by id, by problem-file path, or by level/task_start/task_end of a source."""

from __future__ import annotations

import difflib
from pathlib import Path

from kbtool_plugins.kernelbench.problem import task_number

from kbtool.config.settings import Config
from kbtool.errors import KbtoolError
from kbtool.plugin import manager as plugins
from kbtool.task.model import Task, TaskSource


def sources() -> dict[str, TaskSource]:
    return plugins.collect("register_task_sources")


def source_tasks(name: str, config: Config) -> list[Task]:
    found = sources()
    if name not in found:
        close = difflib.get_close_matches(name, list(found), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (sources: {', '.join(found)})"
        raise KbtoolError(f"unknown task source {name!r}{hint}")
    return found[name].tasks(config)


def task_from_file(path: Path) -> Task:
    if not path.is_file():
        raise KbtoolError(f"problem file not found: {path}")
    return Task(id=f"file/{path.stem}", source="file", name=path.stem, path=path.resolve(),
                number=task_number(path.stem))


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
        raise KbtoolError(f"task {word!r} is ambiguous: {', '.join(t.id for t in matches[:5])}")
    close = difflib.get_close_matches(word, [t.id for t in tasks], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (see: kbtool tasks list {source})"
    raise KbtoolError(f"no task {word!r}{hint}")


def select(config: Config, source: str | None = None) -> list[Task]:
    """Tasks of a source filtered by ``level``, ``task_start`` and ``task_end`` (inclusive)."""
    tasks = source_tasks(source or config.source, config)
    if config.level is not None:
        tasks = [t for t in tasks if t.level == config.level]
    if config.task_start is not None:
        tasks = [t for t in tasks if t.number is not None and t.number >= config.task_start]
    if config.task_end is not None:
        tasks = [t for t in tasks if t.number is not None and t.number <= config.task_end]
    return tasks
