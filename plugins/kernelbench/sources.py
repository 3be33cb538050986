"""Built-in task sources: ``builtin`` (tasks/), ``kernelbench`` (a checkout), ``dir`` (any folder)."""

from __future__ import annotations

import importlib.resources
import os
import re
from pathlib import Path

from kbtool.config import Config
from kbtool.errors import UsageError
from kbtool.task.model import Task
from kbtool_plugins.kernelbench.problem import task_number
from kbtool_plugins.kernelbench.settings import KernelBenchSettings

_LEVEL_DIR = re.compile(r"^level_?(\w+)$")


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
