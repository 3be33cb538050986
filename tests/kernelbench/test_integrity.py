"""Red team: one candidate per published way to fake a result, each caught; honest
candidates pass without a false alarm (docs/integrity.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task import catalog
from kbtool_plugins.kernelbench.static_checks import analyse
from tests.helpers import REDTEAM, SOLUTIONS, make_config

RELU = "builtin/1/2_ReLU"


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory):
    config = make_config(tmp_path_factory.mktemp("strict"), device="cpu", correctness_trials=3)
    with Evaluator(config) as ev:
        yield ev


@pytest.fixture(scope="module")
def loose(tmp_path_factory: pytest.TempPathFactory):
    """The old KernelBench tolerance (1e-2): where zeros and partial sums used to slip by."""
    config = make_config(tmp_path_factory.mktemp("loose"), device="cpu", correctness_trials=3,
                         **{"tolerances.float32.atol": 1e-2, "tolerances.float32.rtol": 1e-2})
    with Evaluator(config) as ev:
        yield ev


def run(ev: Evaluator, task: str, solution: Path) -> EvalResult:
    return ev.evaluate(catalog.resolve(task, ev.config), solution)


@pytest.mark.parametrize(("name", "status", "needle"), [
    # A pointer-keyed cache is caught by the cache probe, or earlier when the allocator
    # hands a trial's fresh copy the address of an older one (stale values: incorrect).
    ("cached_result", (Status.rejected, Status.incorrect), "cached from an earlier call|differ"),
    ("freed_memory", Status.incorrect, "differ"),
    ("mutates_inputs", Status.rejected, "modifies its inputs in place"),
    ("background_thread", Status.rejected, "threads working|outside its timed windows"),
    ("lazy_output", Status.rejected, "not a plain tensor"),
    ("patch_timer", Status.rejected, "replaces time.perf_counter_ns"),
    ("patch_timer_hidden", Status.rejected, "time.perf_counter_ns"),
    ("patch_torch", Status.rejected, "torch"),
    ("patch_harness", Status.rejected, "kbtool"),
    ("patch_code", Status.rejected, "kbtool_plugins.kernelbench.compare.compare_outputs"),
    ("frame_walk", Status.rejected, "inspect.stack"),
])
def test_exploits_are_caught(strict: Evaluator, name: str, status: Status | tuple[Status, ...],
                             needle: str) -> None:
    result = run(strict, RELU, REDTEAM / f"{name}.py")
    assert result.status in (status if isinstance(status, tuple) else (status,)), result.error
    assert re.search(needle, result.error or ""), result.error
    assert result.speedup is None and not result.correct


def test_zeros_under_a_loose_tolerance(loose: Evaluator) -> None:
    result = run(loose, str(REDTEAM / "problems" / "wide_softmax.py"), REDTEAM / "zeros.py")
    assert result.status == Status.rejected
    assert "is constant" in (result.error or ""), result.error


def test_partial_computation_under_a_loose_tolerance(loose: Evaluator) -> None:
    result = run(loose, str(REDTEAM / "problems" / "mean_reduction.py"), REDTEAM / "partial_mean.py")
    assert result.status in (Status.rejected, Status.incorrect)
    assert result.status == Status.rejected or "differ" in (result.error or "")


def test_hard_coded_shapes_are_flagged(strict: Evaluator) -> None:
    result = run(strict, RELU, REDTEAM / "hardcoded_shape.py")
    assert result.status == Status.ok
    assert "fails_other_shape" in result.flags
    assert any("batch_size=32" in f for f in result.findings)


def test_reference_op_presented_as_kernel_is_flagged(strict: Evaluator) -> None:
    result = run(strict, RELU, REDTEAM / "reference_op.py")
    assert result.status == Status.ok
    assert {"reference_op_only", "no_custom_kernel"} <= set(result.flags)


def test_large_speedup_is_timed_side_by_side_and_flagged(strict: Evaluator) -> None:
    result = run(strict, str(REDTEAM / "problems" / "redundant_relu.py"), REDTEAM / "honest_once.py")
    assert result.status == Status.ok, result.error
    # Paired from the start: there is no first, unpaired figure to re-measure.
    assert result.speedup_from == "paired" and result.remeasured is None
    assert result.speedup > 5 and result.significant
    assert ("large_speedup" in result.flags) == (result.speedup > strict.config.speedup_flag_threshold)


@pytest.mark.parametrize(("solution", "task", "allowed"), [
    ("level1_2_ReLU_torch.py", RELU, {"no_custom_kernel"}),
    ("level2_1_Linear_ReLU_Add_torch.py", "builtin/2/1", {"no_custom_kernel", "reference_op_only"}),
    ("level1_2_ReLU_triton.py", RELU, set()),
    pytest.param("level1_2_ReLU_cpp.py", RELU, set(), marks=pytest.mark.slow),
])
def test_honest_candidates_raise_no_alarm(strict: Evaluator, solution: str, task: str,
                                          allowed: set[str]) -> None:
    if "triton" in solution:
        pytest.importorskip("triton")
    result = run(strict, task, SOLUTIONS / solution)
    assert result.status == Status.ok, result.error
    # A busy machine makes a measurement noisy or short, never an integrity problem.
    assert set(result.flags) <= allowed | {"noisy", "few_trials"}, result.findings
    assert result.speedup is not None and result.speedup < strict.config.speedup_flag_threshold


def test_static_findings() -> None:
    assert analyse("import time\ntime.perf_counter = None\n").violations
    assert analyse("import torch as t\nt.cuda.Event = None\n").violations
    assert analyse("from torch import testing\ntesting.assert_close = None\n").violations
    assert analyse("import gc\nx = gc.get_objects()\n").violations
    assert analyse("import sys\nsys.modules['torch'] = None\n").violations
    assert analyse("import kbtool_plugins.kernelbench.compare\n").violations
    honest = analyse("import torch\nfrom torch.utils.cpp_extension import load_inline\n"
                     "m = load_inline(name='x', cpp_sources='')\n"
                     "class ModelNew(torch.nn.Module):\n    def forward(self, x):\n"
                     "        self.cache = x\n        return x\n")
    assert honest.violations == [] and honest.custom_kernel
