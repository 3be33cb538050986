"""The ``hf`` task source: tasks from a data set in the Hugging Face ``datasets`` formats.

``dataset=`` names it: a folder (data files such as parquet, or a ``save_to_disk`` folder),
one data file or a glob of them, or a hub name (``ScalingIntelligence/KernelBench``), found
in the local Hugging Face cache first so that no network is needed once it is there.  The
rows' columns say which task kind holds them (each kind names its ``row_columns``), or
``dataset_kind=`` does; the kind makes the tasks (``TaskKind.tasks_from_rows``).
``datasets`` is imported only when this source is used (the ``hf`` extra).
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.errors import UsageError, unknown
from kbtool.plugin import registry
from kbtool.plugin.hookspecs import hookimpl

if TYPE_CHECKING:  # the configuration's models cost start-up time that --help need not pay
    from kbtool.config import Config
    from kbtool.task.kind import TaskKind
    from kbtool.task.model import Task

SOURCE = "hf"
# Data files by suffix -> the datasets builder that reads them.
BUILDERS = {".parquet": "parquet", ".arrow": "arrow", ".csv": "csv", ".json": "json",
            ".jsonl": "json"}
_SAVED = ("dataset_dict.json", "state.json")  # what save_to_disk writes


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise UsageError("the hf source needs the datasets library: "
                         "pip install 'kbtool[hf]'") from None
    datasets.disable_progress_bars()
    return datasets


def _builder(paths: list[str], spec: str) -> str:
    suffixes = {Path(p).suffix for p in paths}
    if len(suffixes) != 1 or next(iter(suffixes)) not in BUILDERS:
        raise UsageError(f"dataset={spec}: data files must all be one of "
                         f"{', '.join(sorted(BUILDERS))} (got {', '.join(sorted(suffixes))})")
    return BUILDERS[suffixes.pop()]


def _stamp(paths: list[Path]) -> tuple[tuple[str, int, int], ...]:
    """What changes when the files do: the cache of loaded rows is keyed by it."""
    files = sorted(f for p in paths for f in ([p] if p.is_file() else p.rglob("*"))
                   if f.is_file())
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def locate(spec: str) -> tuple[str, Path | None, list[str]]:
    """Where a ``dataset=`` value points: ``("folder", path, [])``, ``("saved", path, [])``,
    ``("files", None, [file, ...])`` or ``("hub", snapshot folder or None, [])``."""
    path = Path(spec).expanduser()
    if path.is_dir():
        kind = "saved" if any((path / name).is_file() for name in _SAVED) else "folder"
        return kind, path.resolve(), []
    if path.is_file():
        return "files", None, [str(path.resolve())]
    if glob.has_magic(spec):
        found = sorted(glob.glob(str(path), recursive=True))
        if not found:
            raise UsageError(f"dataset={spec}: no file matches")
        return "files", None, found
    parts = spec.split("/")
    if spec.startswith((".", "/", "~")) or len(parts) > 2 or not all(parts):
        raise UsageError(f"dataset={spec}: no such file or folder (a hub data set is named "
                         "OWNER/NAME)")
    return "hub", _snapshot(spec), []


def _snapshot(name: str) -> Path | None:
    """The hub data set's files in the local Hugging Face cache (what ``load_dataset`` or
    ``huggingface-cli download`` put there), or None when they are not there."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        return None
    try:
        return Path(snapshot_download(name, repo_type="dataset", local_files_only=True))
    except LocalEntryNotFoundError:
        return None


def load_rows(spec: str, split: str | None) -> tuple[list[str], list[dict[str, Any]]]:
    """The data set's columns and rows (of ``split``, else of every split in turn)."""
    where, path, files = locate(spec)
    stamp = _stamp([path] if path is not None else [Path(f) for f in files])
    return _load_rows(spec, split, where, path, tuple(files), stamp)


@lru_cache(maxsize=8)
def _load_rows(spec: str, split: str | None, where: str, path: Path | None,
               files: tuple[str, ...], stamp: tuple[Any, ...]) -> tuple[list[str], list[dict[str, Any]]]:
    datasets = _datasets()
    try:
        if where == "saved":
            data = datasets.load_from_disk(str(path))
        elif where == "files":
            data = datasets.load_dataset(_builder(list(files), spec), data_files=list(files))
        elif path is not None:  # a folder, or a hub data set's cached snapshot
            data = datasets.load_dataset(str(path))
        else:  # not in the hub cache: the datasets cache (offline), else the hub
            data = datasets.load_dataset(spec)
    except UsageError:
        raise
    except Exception as exc:  # every failure of a data set to load is the input's
        hint = " (not in the local cache, and the hub could not be reached)" \
            if where == "hub" and path is None else ""
        raise UsageError(f"dataset={spec} could not be loaded{hint}: {_first_line(exc)}") \
            from None
    parts = _splits(data, split, spec)
    columns = list(dict.fromkeys(c for part in parts for c in part.column_names))
    return columns, [row for part in parts for row in part.to_list()]


def _splits(data: Any, split: str | None, spec: str) -> list[Any]:
    if not hasattr(data, "keys"):  # one Dataset (save_to_disk of a single split)
        if split is not None:
            raise UsageError(f"dataset={spec} has no splits (dataset_split={split})")
        return [data]
    if split is None:
        return [data[name] for name in data]
    if split not in data:
        raise unknown("split", split, list(data), hint=f"of dataset={spec}")
    return [data[split]]


def pick_kind(columns: list[str], wanted: str | None, spec: str) -> TaskKind:
    """The kind whose tasks the rows hold: ``dataset_kind``, else the one whose columns
    they all have."""
    kinds = {name: kind for name, kind in sorted(registry.TASK_KINDS.all().items())
             if kind.row_columns}
    if wanted is not None:
        if wanted not in kinds:
            raise unknown("task kind", wanted, kinds)  # those that read data sets
        missing = [c for c in kinds[wanted].row_columns if c not in columns]
        if missing:
            raise UsageError(f"dataset={spec} lacks the columns {', '.join(missing)} that "
                             f"{wanted} tasks need (it has: {', '.join(columns)})")
        return kinds[wanted]
    fits = [name for name, kind in kinds.items() if set(kind.row_columns) <= set(columns)]
    if len(fits) == 1:
        return kinds[fits[0]]
    if fits:
        raise UsageError(f"dataset={spec} has the columns of several kinds ({', '.join(fits)}): "
                         "name one with dataset_kind=")
    needs = "; ".join(f"{name}: {', '.join(kind.row_columns)}" for name, kind in kinds.items())
    raise UsageError(f"dataset={spec}: its columns ({', '.join(columns) or 'none'}) hold no "
                     f"task kind's rows ({needs})")


class HFSource:
    description = ("a data set in the Hugging Face formats: a hub name from the local cache, "
                   "a folder or data files (dataset=...)")

    def tasks(self, config: Config) -> list[Task]:
        if not config.dataset:
            raise UsageError("the hf source needs dataset=NAME, FOLDER or FILE (docs/datasets.md)")
        columns, rows = load_rows(config.dataset, config.dataset_split)
        kind = pick_kind(columns, config.dataset_kind, config.dataset)
        try:
            return kind.tasks_from_rows(rows, SOURCE, config)
        except UsageError as exc:
            raise UsageError(f"dataset={config.dataset}: {exc}") from None


@hookimpl
def register_task_sources(register: Callable[[str, Any], None]) -> None:
    register(SOURCE, HFSource())
