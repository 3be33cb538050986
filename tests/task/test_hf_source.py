"""The ``hf`` source: KernelBench problems and repository items from data sets built with
the ``datasets`` library itself and loaded back (folders of parquet files, ``save_to_disk``
folders, single files, globs, a hub name from the local Hugging Face cache)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from kbtool.errors import UsageError
from kbtool.task import catalog
from kbtool_plugins.repo.dataset import DataSet, builtin_root
from kbtool_plugins.repo.settings import RepoPayload
from tests.helpers import REPO, make_config, run_kbtool

datasets = pytest.importorskip(
    "datasets", reason="the hf extra is not installed (pip install 'kbtool[hf]')")

PROBLEMS = REPO / "tasks" / "kernelbench"


def kernelbench_rows(level: int) -> list[dict[str, Any]]:
    """Rows as KernelBench's published data set has them: code, level, name (the file
    name without .py), problem_id."""
    return [{"code": path.read_text(), "level": level, "name": path.stem,
             "problem_id": int(path.stem.split("_")[0])}
            for path in sorted((PROBLEMS / f"level{level}").glob("*.py"))]


def as_hub_folder(data: Any, folder: Path) -> Path:
    """A DatasetDict as the hub keeps it: data/<split>-00000-of-00001.parquet."""
    (folder / "data").mkdir(parents=True)
    for split, part in data.items():
        part.to_parquet(str(folder / "data" / f"{split}-00000-of-00001.parquet"))
    return folder


@pytest.fixture(scope="module")
def kernelbench_data() -> Any:
    return datasets.DatasetDict({f"level_{n}": datasets.Dataset.from_list(kernelbench_rows(n))
                                 for n in (1, 2)})


def tasks_of(tmp_path: Path, dataset: str | Path, **settings: Any) -> list[Any]:
    return catalog.select(make_config(tmp_path, source="hf", dataset=str(dataset), **settings))


def test_kernelbench_problems_from_a_parquet_folder(tmp_path: Path, kernelbench_data: Any) -> None:
    folder = as_hub_folder(kernelbench_data, tmp_path / "kb")
    tasks = tasks_of(tmp_path, folder)
    builtin = {t.id.replace("builtin/", "hf/", 1): t for t in
               catalog.select(make_config(tmp_path, source="builtin")) if t.level in (1, 2)}
    assert [t.id for t in tasks] == list(builtin)  # the same ids, in the same order
    for task in tasks:
        own = builtin[task.id]
        assert task.kind == "kernelbench" and task.source == "hf"
        assert (task.level, task.number, task.name) == (own.level, own.number, own.name)
        assert task.path is not None and task.path.read_text() == own.path.read_text()
        assert task.path.name == own.path.name  # the judge loads the file by its name
        assert task.path.is_relative_to(tmp_path / "cache")
    # The same rows give the same files (keyed by content), however often they are read.
    assert [t.path for t in tasks_of(tmp_path, folder)] == [t.path for t in tasks]
    assert [t.id for t in tasks_of(tmp_path, folder, level=2, task_start=2, task_end=3)] == \
        ["hf/2/2_Conv2d_BatchNorm_ReLU", "hf/2/3_Matmul_Scale_Softmax"]
    assert {t.level for t in tasks_of(tmp_path, folder, dataset_split="level_1")} == {1}
    with pytest.raises(UsageError, match=r"unknown split 'level1' \(did you mean 'level_1'"):
        tasks_of(tmp_path, folder, dataset_split="level1")


def test_saved_folders_single_files_and_globs(tmp_path: Path, kernelbench_data: Any) -> None:
    expected = [t.id for t in tasks_of(tmp_path, as_hub_folder(kernelbench_data, tmp_path / "a"))]
    kernelbench_data.save_to_disk(str(tmp_path / "saved"))
    level1 = kernelbench_data["level_1"]
    level1.to_parquet(str(tmp_path / "one.parquet"))
    level1.to_json(str(tmp_path / "one.jsonl"))
    kernelbench_data["level_2"].to_parquet(str(tmp_path / "two.parquet"))
    assert [t.id for t in tasks_of(tmp_path, tmp_path / "saved")] == expected
    ones = [t.id for t in tasks_of(tmp_path, tmp_path / "one.parquet")]
    assert ones == [i for i in expected if i.startswith("hf/1/")]
    assert [t.id for t in tasks_of(tmp_path, tmp_path / "one.jsonl")] == ones
    assert [t.id for t in tasks_of(tmp_path, f"{tmp_path}/*.parquet")] == expected


def test_a_hub_name_is_found_in_the_local_cache(tmp_path: Path, kernelbench_data: Any) -> None:
    """A hub data set as ``huggingface-cli download`` leaves it in the cache (refs/main
    naming a snapshot) loads with no network; one that is not there is a one-line error."""
    cache = tmp_path / "hub"
    repo = cache / "datasets--someone--kb-mini"
    as_hub_folder(kernelbench_data, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    env = {"HF_HUB_CACHE": str(cache), "HF_HOME": str(tmp_path / "hf"),
           "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    proc = run_kbtool("tasks", "list", "source=hf", "dataset=someone/kb-mini", "level=2",
                      env=env)  # the network is not asked: the cache has it
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"hf/2/{r['name']}" for r in kernelbench_rows(2)]
    proc = run_kbtool("tasks", "list", "source=hf", "dataset=someone/not-there",
                      env={**env, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "kbtool: error: dataset=someone/not-there could not be loaded (not in the local cache")


def repo_rows(spec_as_text: bool = False) -> list[dict[str, Any]]:
    """The built-in packaging items as data set rows: the item's fields, spec, file_text."""
    rows = []
    for task in DataSet(builtin_root() / "packaging").tasks():
        row = RepoPayload.model_validate(task.payload).model_dump(mode="json")
        if spec_as_text:
            row["spec"] = json.dumps(row["spec"])
        rows.append({**row, "id": task.id})  # other columns are ignored
    return rows


@pytest.mark.parametrize("spec_as_text", [False, True])
def test_repository_items_from_rows(tmp_path: Path, spec_as_text: bool) -> None:
    datasets.Dataset.from_list(repo_rows(spec_as_text)).to_parquet(str(tmp_path / "items.parquet"))
    tasks = tasks_of(tmp_path, tmp_path / "items.parquet")
    own = DataSet(builtin_root() / "packaging").tasks()
    assert [t.id for t in tasks] == [t.id.replace("repo/", "hf/", 1) for t in own]
    for task, original in zip(tasks, own, strict=True):
        assert task.kind == "repo" and task.number == original.number
        assert RepoPayload.model_validate(task.payload) == \
            RepoPayload.model_validate(original.payload)


def test_rows_that_hold_no_task_are_one_line_errors(tmp_path: Path) -> None:
    def write(rows: list[dict[str, Any]], name: str) -> Path:
        path = tmp_path / f"{name}.parquet"
        datasets.Dataset.from_list(rows).to_parquet(str(path))
        return path

    good = kernelbench_rows(1)[0]
    cases = {
        "escape": ([{**good, "name": "../../outside"}], "row 0: name '../../outside' is not a file name"),
        "level": ([{**good, "level": "one"}], "row 0: column 'level' must be an integer"),
        "twice": ([good, {**good, "problem_id": 99}], "row 1: task hf/1/1_Matmul is defined twice"),
        "columns": ([{"prompt": "x", "answer": "y"}], "hold no task kind's rows (kernelbench: "
                    "code, level, name, problem_id; repo: task,"),
    }
    for name, (rows, message) in cases.items():
        with pytest.raises(UsageError, match=re.escape(message)):
            tasks_of(tmp_path, write(rows, name))
    item = repo_rows()[0]
    tampered = write([{**item, "file_text": item["file_text"] + "# edited\n"}], "tampered")
    with pytest.raises(UsageError, match="row 0: 'file_text' is not the file"):
        tasks_of(tmp_path, tampered)
    with pytest.raises(UsageError, match="lacks the columns code, level, name, problem_id"):
        tasks_of(tmp_path, tampered, dataset_kind="kernelbench")
    with pytest.raises(UsageError, match=re.escape("unknown task kind 'kernelbenc' (did you "
                                                   "mean 'kernelbench'?)")):
        tasks_of(tmp_path, tampered, dataset_kind="kernelbenc")
    with pytest.raises(UsageError, match="no such file or folder"):
        tasks_of(tmp_path, tmp_path / "missing")
    with pytest.raises(UsageError, match="needs dataset="):
        catalog.select(make_config(tmp_path, source="hf"))


def test_a_problem_from_a_row_is_evaluated(tmp_path: Path) -> None:
    """The reference of a problem loaded from a row, as its own candidate: correct."""
    folder = tmp_path / "kb"
    data = datasets.DatasetDict({"level_1": datasets.Dataset.from_list(kernelbench_rows(1))})
    as_hub_folder(data, folder)
    proc = run_kbtool("eval", "source=hf", f"dataset={folder}", "level=1", "task_start=2",
                      "task_end=2", "--solutions", "baseline", "--config-profile", "quick",
                      "--json", f"cache_dir={tmp_path / 'cache'}", "--output",
                      str(tmp_path / "out.jsonl"), "device=cpu")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[0])
    assert result["task"] == "hf/1/2_ReLU" and result["status"] == "ok"


def test_without_the_datasets_library_the_error_names_the_extra(tmp_path: Path) -> None:
    """Where ``import datasets`` fails (a module of that name that raises ImportError, first
    on the path), the source says which extra to install, in one line."""
    shadow = tmp_path / "shadow" / "datasets"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(shadow.parent),
                                                    os.environ.get("PYTHONPATH")) if p)}
    proc = run_kbtool("tasks", "list", "source=hf", f"dataset={tmp_path}", env=env)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("kbtool: error: the hf source needs the datasets library: "
                                   "pip install 'kbtool[hf]'")
