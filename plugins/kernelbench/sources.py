"""Built-in task sources: ``builtin`` (tasks/), ``kernelbench`` (a checkout), ``dir`` (any
folder); and problems read from a data set's rows (the ``hf`` source, ``tasks_from_rows``)."""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from pathlib import Path
from typing import Any

from kbtool.config import Config
from kbtool.errors import UsageError
from kbtool.task.model import Task
from kbtool.util.files import write_atomic
from kbtool_plugins.kernelbench.problem import task_number
from kbtool_plugins.kernelbench.settings import KernelBenchSettings

_LEVEL_DIR = re.compile(r"^level_?(\w+)$")
# The columns of KernelBench's published data set (ScalingIntelligence/KernelBench).
ROW_COLUMNS = ("code", "level", "name", "problem_id")
_FILE_STEM = re.compile(r"^\w[\w.+-]*$")


def scan_problems(root: Path, source: str) -> list[Task]:
    """Problem files under ``root``: ``levelN/`` folders give the level, other files none."""
    tasks = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if path.name.startswith("_") or any(p.startswith((".", "_")) for p in rel.parts[:-1]):
            continue
        level = None
        match = _LEVEL_DIR.match(rel.parts[0]) if len(rel.parts) > 1 else None
        if match and match.group(1).isdigit():
            level = int(match.group(1))
        prefix = "/".join(
            [str(level) if level is not None and i == 0 else part
             for i, part in enumerate(rel.parts[:-1])])
        task_id = "/".join(p for p in (source, prefix, path.stem) if p)
        tasks.append(Task(id=task_id, source=source, name=path.stem, path=path, level=level,
                          number=task_number(path.stem)))
    tasks.sort(key=lambda t: (t.level if t.level is not None else 1 << 30,
                              t.number if t.number is not None else 1 << 30, t.id))
    return tasks


class BuiltinSource:
    description = "kbtool's own problems (tasks/ in the repository)"

    def tasks(self, config: Config) -> list[Task]:
        root = Path(str(importlib.resources.files("kbtool_tasks"))) / "kernelbench"
        return scan_problems(root, "builtin")


class KernelBenchSource:
    description = "a KernelBench checkout (kernelbench_path= or $KERNELBENCH_PATH)"

    def tasks(self, config: Config) -> list[Task]:
        path = config.section(KernelBenchSettings).kernelbench_path or os.environ.get("KERNELBENCH_PATH")
        if not path:
            raise UsageError("the kernelbench source needs kernelbench_path=PATH "
                              "(a KernelBench checkout) or $KERNELBENCH_PATH")
        root = Path(path).expanduser()
        if (root / "KernelBench").is_dir():
            root = root / "KernelBench"
        if not root.is_dir() or not any(_LEVEL_DIR.match(p.name) for p in root.iterdir()):
            raise UsageError(f"{path} is not a KernelBench checkout (no level1/, level2/, ... "
                              "folders in it or in its KernelBench/ folder)")
        return scan_problems(root, "kernelbench")


class DirSource:
    description = "any folder of problem files (tasks_dir=PATH)"

    def tasks(self, config: Config) -> list[Task]:
        tasks_dir = config.section(KernelBenchSettings).tasks_dir
        if tasks_dir is None:
            raise UsageError("the dir source needs tasks_dir=PATH")
        root = tasks_dir.expanduser()
        if not root.is_dir():
            raise UsageError(f"tasks_dir {root} is not a folder")
        return scan_problems(root, "dir")


def _integer(value: Any, column: str, where: str) -> int | None:
    """A row's integer (1.0 from a CSV or JSON reader is 1), or None for an empty cell."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise UsageError(f"{where}: column {column!r} must be an integer, not {value!r}")


def problem_file(cache_dir: Path, code: str, stem: str) -> Path:
    """A problem's text as a file the judge loads (problems are loaded from a file), under
    the cache, named by its content: the same row always gives the same path."""
    digest = hashlib.sha256(code.encode()).hexdigest()[:16]
    path = cache_dir / "datasets" / "kernelbench" / digest / f"{stem}.py"
    if not path.is_file() or path.read_text() != code:
        write_atomic(path, code)
    return path


def tasks_from_rows(rows: list[dict[str, Any]], source: str, cache_dir: Path) -> list[Task]:
    """KernelBench problems from rows with the published data set's columns: ``code`` (the
    problem file's text), ``level`` (an integer), ``name`` (the file name, ``.py`` optional)
    and ``problem_id`` (the number ``task_start``/``task_end`` select by)."""
    tasks: list[Task] = []
    seen: set[str] = set()
    for index, row in enumerate(rows):
        code, level, name, number = (row.get(c) for c in ROW_COLUMNS)
        where = f"row {index}"
        if not isinstance(code, str) or not code.strip():
            raise UsageError(f"{where}: column 'code' must hold the problem's source text")
        if not isinstance(name, str):
            raise UsageError(f"{where}: column 'name' must be a file name, not {name!r}")
        stem = name[:-3] if name.endswith(".py") else name
        if not _FILE_STEM.match(stem):
            raise UsageError(f"{where}: name {name!r} is not a file name (letters, digits, "
                             "_ . + - and no folders)")
        level, number = _integer(level, "level", where), _integer(number, "problem_id", where)
        task_id = "/".join(str(p) for p in (source, level, stem) if p is not None)
        if task_id in seen:
            raise UsageError(f"{where}: task {task_id} is defined twice (two rows with one "
                             "level and name)")
        seen.add(task_id)
        tasks.append(Task(id=task_id, source=source, name=stem,
                          path=problem_file(cache_dir, code, stem), level=level,
                          number=number if number is not None else task_number(stem)))
    tasks.sort(key=lambda t: (t.level if t.level is not None else 1 << 30,
                              t.number if t.number is not None else 1 << 30, t.id))
    return tasks
