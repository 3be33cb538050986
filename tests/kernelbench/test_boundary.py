"""The measurement boundary (docs/integrity.md): nothing the candidate controls decides what
is timed, counted or compared.  One family of held-out exploits per way a candidate could
decide something about its own measurement, each caught; honest candidates keep their
verdicts.  Each exploit here passed as ``ok`` (most with a "significant" speedup) before the
judge read outputs itself, calibrated from the reference alone, gave every timed call a set
never seen before, compared every timed call and held every output to a relative bound."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task import catalog
from tests.helpers import REDTEAM, make_config, never_acted

RELU = "builtin/1/2_ReLU"
LINEAR = "builtin/2/1_Linear_ReLU_Add"
TINY_LOSS = str(REDTEAM / "problems" / "tiny_loss.py")


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory):
    config = make_config(tmp_path_factory.mktemp("boundary"), device="cpu", timeout_s=300,
                         correctness_trials=2)
    with Evaluator(config) as ev:
        yield ev


def run(ev: Evaluator, solution: Path, task: str = RELU) -> EvalResult:
    return ev.evaluate(catalog.resolve(task, ev.config), solution)


def refused(result: EvalResult) -> bool:
    """Refused, or at least never reported faster: what an exploit must come to."""
    return result.status != Status.ok or not result.significant


@pytest.mark.parametrize(("name", "statuses", "needle"), [
    # 1. What is inside the window: outputs made only when they are asked for.
    ("fetch_time_compute", {Status.incorrect, Status.rejected}, "differ|wrong"),
    ("forged_outputs", {Status.rejected}, "cannot be read"),
    # 8. Luck: wrong in some timed calls only; inputs changed only while timed.
    ("wrong_now_and_then", {Status.rejected}, "while it was timed"),
    ("inplace_when_timed", {Status.rejected}, "modifies its inputs in place"),
])
def test_outputs_are_read_and_compared_by_the_judge(judged: Evaluator, name: str,
                                                    statuses: set[Status], needle: str) -> None:
    result = run(judged, REDTEAM / f"{name}.py")
    if never_acted(name, result):
        return
    assert result.status in statuses, (result.status, result.error)
    assert re.search(needle, result.error or ""), result.error
    assert result.speedup is None and not result.correct


@pytest.mark.parametrize(("name", "task"), [
    # 3. Calibrations made from the candidate's behaviour.
    ("slow_empty_windows", RELU),
    # 4. Inputs seen before: the pool starved, a cache keyed on the tensor, a memo per sample.
    ("starves_the_pool", RELU), ("object_cache", RELU), ("row_memo", LINEAR),
])
def test_no_gain_from_what_the_candidate_decides(judged: Evaluator, name: str,
                                                 task: str) -> None:
    """Each computes the right answer (or replays one), so it may pass as correct; what it
    must never get is a speedup: its calls on never-seen sets cost what the work costs."""
    result = run(judged, REDTEAM / f"{name}.py", task)
    assert refused(result), (result.speedup, result.speedup_ci, result.findings)


def test_memo_is_reported_on_sets_seen_before(judged: Evaluator) -> None:
    result = run(judged, REDTEAM / "row_memo.py", LINEAR)
    assert result.status == Status.ok, result.error
    assert "reuses_results" in result.flags, result.findings


def test_a_tiny_scalar_answered_as_zero_is_rejected(judged: Evaluator) -> None:
    result = run(judged, REDTEAM / "zero_scalar.py", TINY_LOSS)
    assert result.status == Status.rejected, result.error
    assert "relative L2 error" in (result.error or "")


def test_an_honest_fused_loss_passes(judged: Evaluator, tmp_path: Path) -> None:
    fused = tmp_path / "fused.py"
    fused.write_text("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
                     "    def forward(self, p, t):\n"
                     "        d = p - t\n        return torch.dot(d.view(-1), d.view(-1)) "
                     "* (1e-6 / d.numel())\n")
    result = run(judged, fused, TINY_LOSS)
    assert result.status == Status.ok, result.error


@pytest.mark.parametrize("name", ["refuses_recording", "other_aten_ops"])
def test_a_kernel_marker_must_be_shown_to_do_the_work(judged: Evaluator, name: str) -> None:
    result = run(judged, REDTEAM / f"{name}.py")
    assert result.status == Status.ok, result.error
    assert "no_custom_kernel" in result.flags, result.findings


def test_a_large_source_is_judged(judged: Evaluator, tmp_path: Path) -> None:
    """7. The judge's own limits are not the candidate's fault: a 1 MB source (a generated
    table it carries) travels to its runner and is judged like any other."""
    table = "\n".join(f"# {i:08d} " + "x" * 100 for i in range(9500))
    big = tmp_path / "big.py"
    big.write_text("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
                   "    def forward(self, x):\n        return torch.clamp_min(x, 0.0)\n\n\n"
                   + table + "\n")
    assert big.stat().st_size > 1_000_000
    result = run(judged, big)
    assert result.status == Status.ok, result.error


def test_honest_in_place_work_passes(judged: Evaluator) -> None:
    result = run(judged, REDTEAM / "honest_inplace.py")
    assert result.status == Status.ok, result.error
    assert set(result.flags) <= {"no_custom_kernel", "noisy", "few_trials"}, result.findings


HINGE = '''import torch
import torch.nn as nn

batch_size = 512
input_shape = (512,)


class Model(nn.Module):
    def forward(self, predictions, targets):
        return torch.mean(torch.clamp(1 - predictions * targets, min=0))


def get_inputs():
    return [torch.rand(batch_size, *input_shape),
            torch.randint(0, 2, (batch_size,)).float() * 2 - 1]


def get_init_inputs():
    return []
'''


def test_a_shape_tied_to_the_batch_moves_with_it(judged: Evaluator, tmp_path: Path) -> None:
    """The second shape halves the sizes equal to the batch with it where the reference
    needs that (it broadcasts against the batch): hard-coded shapes are seen there too."""
    problem = tmp_path / "hinge.py"
    problem.write_text(HINGE)
    fixed = tmp_path / "fixed.py"
    fixed.write_text("import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
                     "    def forward(self, p, t):\n"
                     "        return torch.mean(torch.clamp(1 - p.reshape(512, 512) * "
                     "t.reshape(512), min=0))\n")
    result = run(judged, fixed, str(problem))
    assert result.status == Status.ok, result.error
    assert any("input_shape[0]=256" in f for f in result.findings
               if f.startswith("fails_other_shape")), result.findings
