"""``kbtool report --export DIR``: every evaluation as a row of a parquet data set with its
provenance, read back with the ``datasets`` library."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kbtool.report.export import RESULTS, ResultRow
from tests.helpers import RUN_SMALL, run_kbtool

datasets = pytest.importorskip(
    "datasets", reason="the hf extra is not installed (pip install 'kbtool[hf]')")

PROVENANCE = ("kbtool_version", "task_hash", "candidate_hash", "machine", "device",
              "device_name", "torch_version", "cuda_version", "driver_version")


def test_export_writes_every_evaluation_as_a_data_set(tmp_path: Path) -> None:
    out = tmp_path / "export"
    proc = run_kbtool("report", str(RUN_SMALL), "--export", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f"wrote 24 evaluations as a data set to {out / RESULTS}" in proc.stderr
    loaded = datasets.load_dataset("parquet", data_files=str(out / RESULTS))["train"]
    assert len(loaded) == len(list(RUN_SMALL.glob("tasks/*/phase*/agent*/step*/candidate.py")))
    assert set(loaded.column_names) == set(ResultRow.model_fields)
    assert set(PROVENANCE) <= set(loaded.column_names)
    # Typed columns, whatever the values: an all-empty column is not of the null type.
    assert loaded.features["driver_version"].dtype == "string"
    assert loaded.features["speedup"].dtype == "float64"
    assert loaded.features["best"].dtype == "bool"
    summary = json.loads((RUN_SMALL / "summary.json").read_text())
    best = {t["best_solution"] for t in summary["tasks"].values() if t["correct"]}
    for row in loaded:
        candidate = RUN_SMALL / row["candidate"]
        assert row["code"] == candidate.read_text()
        assert row["candidate_hash"] == hashlib.sha256(candidate.read_bytes()).hexdigest()
        evaluated = json.loads((candidate.parent / "eval.json").read_text())
        assert row["status"] == evaluated["status"] and row["task"] == evaluated["task"]
        assert row["machine"] == evaluated["env"]["hostname"]
        assert row["torch_version"] == evaluated["env"]["torch_version"]
        assert row["kbtool_version"] == evaluated["env"]["kbtool_version"]
        assert row["best"] == (row["candidate"] in best)
        assert row["run"] == str(RUN_SMALL) and row["kind"] == "kernelbench"
        assert json.loads(row["details"])["max_abs_diff"] == evaluated["max_abs_diff"]
    assert sum(loaded["best"]) == len(best) == 3
    # load_dataset on the folder finds it too (the best solutions beside it are no data).
    assert len(datasets.load_dataset(str(out))["train"]) == len(loaded)
    # The best solutions are still copied.
    assert sorted(p.name for p in out.glob("*.py")) == ["builtin_1_1_Matmul.py",
                                                       "builtin_1_2_ReLU.py",
                                                       "builtin_2_1_Linear_ReLU_Add.py"]
