"""The ``perf`` task source: task files (``*.yaml``) in ``tasks/perf/`` and in
``perf_tasks_dir``.  A task file is a :class:`PerfPayload` plus ``name`` and ``number``."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import yaml
from pydantic import ValidationError

from kbtool.config import Config
from kbtool.errors import UsageError, invalid
from kbtool.task.model import Task
from kbtool_plugins.perf.settings import PerfPayload, PerfSettings

SOURCE = "perf"


def builtin_dir() -> Path:
    return Path(str(importlib.resources.files("kbtool_tasks"))) / "perf"


def read_task(path: Path) -> Task:
    """A task file as a task; a one-line error for a broken one."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"perf task {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"perf task {path}: not a mapping")
    name = str(data.pop("name", path.stem))
    number = data.pop("number", None)
    try:
        payload = PerfPayload.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"perf task {path}: {invalid(exc, 'task')}") from None
    return Task(id=f"{SOURCE}/{name}", source=SOURCE, name=name, kind="perf", path=path,
                number=number if isinstance(number, int) else None,
                payload=payload.model_dump(mode="json", exclude_defaults=True))


class PerfSource:
    description = "performance commits of real libraries (tasks/perf/, perf_tasks_dir=DIR)"

    def tasks(self, config: Config) -> list[Task]:
        folders = [builtin_dir()]
        extra = config.section(PerfSettings).perf_tasks_dir
        if extra is not None:
            extra = extra.expanduser().resolve()  # checks run in another folder
            if not extra.is_dir():
                raise UsageError(f"perf_tasks_dir {extra} is not a folder")
            folders.append(extra)
        tasks = [read_task(p) for folder in folders for p in sorted(folder.glob("*.yaml"))]
        seen: dict[str, Path] = {}
        for task in tasks:
            if task.id in seen:
                raise UsageError(f"perf task {task.id} is defined twice ({seen[task.id]} and "
                                 f"{task.path})")
            seen[task.id] = task.path  # type: ignore[assignment]
        return sorted(tasks, key=lambda t: (t.number if t.number is not None else 1 << 30, t.id))
