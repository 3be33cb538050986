"""Item folders (data sets) and the ``repo`` task source.

A data set is a folder made by ``kbtool tasks build``::

    repo.yaml     the repository (a RepoSpec: release, archive hash, runner, test deps)
    items.jsonl   one item per line (RepoItem)
    files.json    the pristine text of every file an item is in, by path (prompts need
                  it; the repository itself is only fetched to run tests)

The built-in ones are ``tasks/repo/<name>/``; ``repo_data=[DIR, ...]`` adds more.  Task ids
are ``repo/<name>/<task>/<n>_<Class.method>``, ``n`` numbering the folder's items from 1.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from kbtool.config import Config
from kbtool.errors import UsageError, unknown
from kbtool.task.model import Task
from kbtool_plugins.repo.repository import RepoSpec
from kbtool_plugins.repo.settings import RepoItem, RepoPayload, RepoSettings

SPEC, ITEMS, FILES = "repo.yaml", "items.jsonl", "files.json"


def builtin_root() -> Path:
    return Path(str(importlib.resources.files("kbtool_tasks"))) / "repo"


def builtin_folders() -> list[Path]:
    root = builtin_root()
    return sorted(p for p in root.iterdir() if (p / SPEC).is_file()) if root.is_dir() else []


def qualname(item: RepoItem) -> str:
    return f"{item.class_name}.{item.method_name}" if item.class_name else item.method_name


def task_id(spec: RepoSpec, item: RepoItem, number: int, source: str = "repo") -> str:
    return f"{source}/{spec.name}/{item.task}/{number}_{qualname(item)}"


def item_task(payload: RepoPayload, number: int, source: str = "repo") -> Task:
    """The task of one item (its payload: the item, its repository, the pristine file)."""
    return Task(id=task_id(payload.spec, payload, number, source), source=source,
                name=f"{number}_{qualname(payload)}", kind="repo", number=number,
                payload=payload.model_dump(mode="json"))


class DataSet:
    """One item folder, read and checked."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            self.spec = RepoSpec.model_validate(yaml.safe_load((folder / SPEC).read_text()))
            self.files: dict[str, str] = json.loads((folder / FILES).read_text())
            lines = (folder / ITEMS).read_text().splitlines()
            self.items = [RepoItem.model_validate_json(line) for line in lines if line.strip()]
        except (OSError, ValueError, ValidationError, yaml.YAMLError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UsageError(f"{folder} is not a repository item folder: {first}") from None
        for item in self.items:
            text = self.files.get(item.file_path)
            if text is None or hashlib.sha256(text.encode()).hexdigest() != item.file_sha256:
                raise UsageError(f"{folder}: {FILES} lacks the pristine text of "
                                 f"{item.file_path}")

    def tasks(self) -> list[Task]:
        return [item_task(RepoPayload(**item.model_dump(), spec=self.spec,
                                      file_text=self.files[item.file_path]), number)
                for number, item in enumerate(self.items, 1)]


# A data set's rows: the item's fields, ``spec`` (the repository, a mapping or its JSON
# text) and ``file_text`` (the pristine file); other columns are ignored.
ROW_COLUMNS = tuple(name for name, field in RepoPayload.model_fields.items()
                    if field.is_required())


def tasks_from_rows(rows: list[dict[str, Any]], source: str) -> list[Task]:
    """Repository items from a data set's rows, numbered from 1 per repository in the
    order of the rows (as the items of an item folder are)."""
    tasks: list[Task] = []
    numbers: dict[str, int] = {}
    for index, row in enumerate(rows):
        data = {k: v for k, v in row.items() if k in RepoPayload.model_fields}
        if isinstance(data.get("spec"), str):
            try:
                data["spec"] = json.loads(data["spec"])
            except ValueError:
                raise UsageError(f"row {index}: column 'spec' is neither a mapping nor "
                                 "JSON text") from None
        try:
            payload = RepoPayload.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise UsageError(f"row {index}: column {where!r}: {err['msg']}") from None
        if hashlib.sha256(payload.file_text.encode()).hexdigest() != payload.file_sha256:
            raise UsageError(f"row {index}: 'file_text' is not the file whose SHA-256 "
                             "'file_sha256' names")
        number = numbers[payload.spec.name] = numbers.get(payload.spec.name, 0) + 1
        tasks.append(item_task(payload, number, source))
    return tasks


@lru_cache(maxsize=32)
def _load(folder: Path, stamp: tuple[float, ...]) -> DataSet:
    return DataSet(folder)


def load(folder: Path) -> DataSet:
    """A data set, read once while its files do not change."""
    folder = folder.expanduser().resolve()
    if not (folder / SPEC).is_file():
        raise UsageError(f"{folder} is not a repository item folder (no {SPEC}; make one "
                         "with `kbtool tasks build`)")
    stamp = tuple((folder / name).stat().st_mtime if (folder / name).exists() else 0.0
                  for name in (SPEC, ITEMS, FILES))
    return _load(folder, stamp)


class RepoSource:
    description = ("repository items: method generation, completion, repair (tasks/repo/, "
                   "and repo_data=[DIR, ...])")

    def tasks(self, config: Config) -> list[Task]:
        own = config.section(RepoSettings)
        data = [load(folder) for folder in [*builtin_folders(), *own.repo_data]]
        names = [d.spec.name for d in data]
        for name in own.repository:
            if name not in names:
                raise unknown("repository", name, names, hint="the item folders' names "
                              "(repo.yaml); repo_data=[DIR] adds folders")
        tasks: list[Task] = []
        seen: set[str] = set()
        for dataset in data:
            if own.repository and dataset.spec.name not in own.repository:
                continue
            for task in dataset.tasks():
                if own.task_types and task.payload["task"] not in own.task_types:
                    continue
                if task.id in seen:
                    raise UsageError(f"task {task.id} is defined twice (two item folders of "
                                     f"one repository: rename one in its {SPEC})")
                seen.add(task.id)
                tasks.append(task)
        return tasks
