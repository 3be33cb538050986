"""`kbtool tasks check` for every kind: the default (the reference passes its own check as a
candidate) and what KernelBench and repository tasks check besides (perf: tests/perf)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import run_kbtool

CONSTANT = '''import torch
import torch.nn as nn

N = 64


class Model(nn.Module):
    def forward(self, x):
        return torch.zeros_like(x) + 1.0


def get_inputs():
    return [torch.randn(N, N)]


def get_init_inputs():
    return []
'''


def test_a_kernelbench_problem(tmp_path: Path) -> None:
    good = run_kbtool("tasks", "check", "builtin/1/1", "device=cpu", timeout=600)
    assert good.returncode == 0, good.stderr
    assert "outputs are finite, repeatable and depend on its inputs" in good.stdout
    problem = tmp_path / "1_constant.py"
    problem.write_text(CONSTANT)
    bad = run_kbtool("tasks", "check", str(problem), "device=cpu", timeout=600)
    assert bad.returncode == 2, (bad.stdout, bad.stderr)
    assert "PROBLEM: the reference's outputs do not depend on its inputs" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_a_repository_item() -> None:
    proc = run_kbtool("tasks", "check", "repo/packaging/method_gen/2__parse_extras_list",
                      timeout=900)
    assert proc.returncode == 0, proc.stderr
    assert "the reference itself, checked as a candidate, is ok" in proc.stdout
    assert "the item's tests fail with a stub that raises" in proc.stdout


def test_unknown_task_is_one_line() -> None:
    proc = run_kbtool("tasks", "check", "perf/no-such-task")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
