"""Eval-only batch mode: --solutions baseline|DIR."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers import SOLUTIONS, run_kbtool


def test_baseline_batch_in_both_modes(tmp_path: Path) -> None:
    for mode in ("eager", "compile"):
        out = tmp_path / f"{mode}.jsonl"
        proc = run_kbtool("eval", "level=1", "task_start=1", "task_end=2", "--solutions",
                          "baseline", "--mode", mode, "--json", "--output", str(out),
                          "--config-profile", "quick")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert [r["task"] for r in data["results"]] == ["builtin/1/1_Matmul", "builtin/1/2_ReLU"]
        for result in data["results"]:
            assert result["mode"] == mode and result["status"] == "ok"
            assert result["baseline_ms"] == result["runtime_ms"] > 0
        lines = out.read_text().splitlines()
        assert [json.loads(line)["task"] for line in lines] == [r["task"] for r in data["results"]]


def test_solutions_folder(tmp_path: Path) -> None:
    folder = tmp_path / "solutions"
    folder.mkdir()
    shutil.copy(SOLUTIONS / "level1_2_ReLU_torch.py", folder / "2_ReLU.py")
    shutil.copy(SOLUTIONS / "level1_1_Matmul_wrong.py", folder / "level1_1_Matmul.py")
    proc = run_kbtool("eval", "level=1", "task_start=1", "task_end=3", "--solutions", str(folder),
                      "--output", str(tmp_path / "out.jsonl"), "--config-profile", "quick")
    assert proc.returncode == 0, proc.stderr
    for expected in ("builtin/1/1_Matmul", "incorrect", "builtin/1/2_ReLU", "ok",
                     "builtin/1/3_Softmax", "skipped"):
        assert expected in proc.stdout
    assert "no solution file for builtin/1/3_Softmax" in proc.stderr
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert {r["task"]: r.get("status") or "skipped" for r in results} == {
        "builtin/1/1_Matmul": "incorrect", "builtin/1/2_ReLU": "ok",
        "builtin/1/3_Softmax": "skipped"}  # every selected task is in the file
    skipped = next(r for r in results if "skipped" in r)
    assert skipped["skipped"].startswith("no solution file") and "\n" not in skipped["skipped"]


def test_batch_usage_errors(tmp_path: Path) -> None:
    empty = run_kbtool("eval", "level=9", "--solutions", "baseline")
    assert empty.returncode == 2 and "no tasks selected" in empty.stderr
    bad = run_kbtool("eval", "level=1", "--solutions", str(tmp_path / "nope"))
    assert bad.returncode == 2 and "'baseline' or a folder" in bad.stderr
