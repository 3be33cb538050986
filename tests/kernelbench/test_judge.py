"""The judge (plugins/kernelbench/judge.py) against the families of held-out exploits: the
result channel, predictable inputs, the sandbox, the reference and harness within reach,
work hidden from the clock, kernel markers that do not run.  Each candidate in tests/redteam
is new; each must be caught, and an honest torch.compile candidate must pass."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kbtool.evaluation.batch import run_batch
from kbtool.evaluation.evaluator import Evaluator, assemble
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task import catalog
from tests.evaluation.test_evaluator import orphans
from tests.helpers import REDTEAM, SOLUTIONS, make_config, never_acted

RELU = "builtin/1/2_ReLU"
SECRET = "OPENAI_API_KEY"


@pytest.fixture(scope="module")
def judged(tmp_path_factory: pytest.TempPathFactory):
    # A provider key in the environment kbtool runs in: no candidate may see it.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET, "sk-must-not-leak")
        config = make_config(tmp_path_factory.mktemp("judge"), device="cpu", timeout_s=300,
                             correctness_trials=2)
        with Evaluator(config) as ev:
            yield ev


def run(ev: Evaluator, name: str, task: str = RELU) -> EvalResult:
    return ev.evaluate(catalog.resolve(task, ev.config), REDTEAM / f"{name}.py")


@pytest.mark.parametrize(("name", "statuses", "needle"), [
    # The result channel: forged verdicts, stages and replies are protocol violations.
    ("forge_verdict", {Status.rejected}, "broke the protocol"),
    ("forge_waiting", {Status.rejected, Status.timeout}, ""),
    ("colliding_keys", {Status.rejected}, "broke the protocol"),
    ("late_forgery", {Status.rejected}, "broke the protocol"),
    # Predictable inputs and caches: OS seeds, refreshed inputs, probes, checked timed calls.
    ("seed_predictor", {Status.incorrect, Status.rejected}, "differ"),
    ("value_cache", {Status.rejected}, "cached from an earlier call"),
    ("value_cache_middle", {Status.rejected}, "cached from an earlier call"),
    ("version_cache", {Status.rejected, Status.incorrect}, "cached from an earlier call|differ"),
    ("back_to_back", {Status.rejected}, "while it was timed"),
    # The reference, its module and the harness are in another process.
    ("edits_problem", {Status.incorrect}, "differ"),
    ("dispatch_mode", {Status.rejected}, "dispatch modes"),
    ("default_dtype", {Status.rejected}, "default dtype"),
    ("patch_runner", {Status.incorrect, Status.rejected}, ""),
    # Work hidden from the clock: torch's native pool, a helper process.
    ("jit_fork", {Status.rejected, Status.incorrect}, ""),
    ("helper_process", {Status.rejected, Status.incorrect}, ""),
])
def test_exploit_families_are_caught(judged: Evaluator, name: str, statuses: set[Status],
                                     needle: str) -> None:
    result = run(judged, name)
    if never_acted(name, result):
        return
    assert result.status in statuses, (result.status, result.error)
    assert re.search(needle, result.error or ""), result.error
    assert result.speedup is None and result.speedup_ci is None and not result.correct


def test_a_broken_protocol_leaves_nothing_behind(judged: Evaluator) -> None:
    """A malformed message mid-check, and a worker left spinning in a session of its own:
    the candidate is rejected, every process of it ends, its scratch is removed."""
    before = orphans()
    result = run(judged, "garbage_channel")
    assert result.status == Status.rejected and "broke the protocol" in (result.error or "")
    scratch = re.search(r"SCRATCH=(\S+)", result.error or "")
    assert scratch and not Path(scratch.group(1)).exists()
    assert not orphans() - before
    assert run(judged, "honest_once").status == Status.ok  # and the evaluator goes on


def test_the_sandbox_hides_the_machine(judged: Evaluator) -> None:
    result = run(judged, "looks_around")
    assert result.status == Status.runtime_error and "seen" in (result.error or "")
    seen = dict(re.findall(r"(\w+)=(\[[^\]]*\]|\S+)", result.error or ""))
    assert seen["SECRETS"] == "[]"  # no provider key, no token
    assert "/kbtool-" in seen["HOME"]  # its home is its scratch
    if "private /proc" in result.sandbox:
        assert seen["PIDS"] == "[1]"  # only itself: not the judge, not kbtool, not the host
    if "ipc namespace" in result.sandbox:  # its segment died with its IPC namespace
        assert "1262638156" not in Path("/proc/sysvipc/shm").read_text()


def test_an_unused_kernel_marker_is_seen_through(judged: Evaluator) -> None:
    result = run(judged, "unused_load_inline")
    assert result.status == Status.ok, result.error
    assert {"reference_op_only", "no_custom_kernel"} <= set(result.flags), result.findings


def test_timer_samples_are_out_of_reach(judged: Evaluator) -> None:
    """It shrinks every list of floats its frames hold: none is the judge's."""
    result = run(judged, "timer_frames")
    assert result.status == Status.ok, result.error
    assert result.speedup_from == "paired" and result.timing is not None


DROPOUT = """import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, p):
        super().__init__()
        self.linear = nn.Linear(64, 64)
        self.dropout = nn.Dropout(p)

    def forward(self, x):
        return torch.softmax(self.dropout(self.linear(x)), dim=1)


def get_inputs():
    return [torch.rand(16, 64)]


def get_init_inputs():
    return [0.2]
"""


def test_a_random_op_is_not_taken_for_a_cache(judged: Evaluator, tmp_path: Path) -> None:
    """Dropout in training mode (KernelBench level 2, problem 66): the reference as its own
    candidate draws the same masks as the reference through every check and probe."""
    problem = tmp_path / "dropout.py"
    problem.write_text(DROPOUT)
    (tmp_path / "same.py").write_text(DROPOUT + "\nModelNew = Model\n")
    result = judged.evaluate(catalog.resolve(str(problem), judged.config), tmp_path / "same.py")
    assert result.status == Status.ok, result.error
    # The interval carries the margin for two processes running the same code (3%).
    low, high = result.speedup_ci or (0.0, 0.0)
    speedup = result.speedup or 0.0
    assert low * 1.03 <= speedup * (1 + 1e-9) and high / 1.03 >= speedup * (1 - 1e-9)
    assert result.significant == (low > 1)


@pytest.mark.slow
def test_honest_torch_compile_passes(judged: Evaluator) -> None:
    result = run(judged, "honest_compile")
    assert result.status == Status.ok, result.error
    assert set(result.flags) <= {"no_custom_kernel", "reference_op_only", "noisy",
                                 "few_trials"}, result.findings


def test_a_batch_survives_forged_results(judged: Evaluator, tmp_path: Path) -> None:
    """A forged result with colliding keys once ended a whole --solutions batch."""
    folder = tmp_path / "solutions"
    folder.mkdir()
    (folder / "2_ReLU.py").write_text((REDTEAM / "colliding_keys.py").read_text())
    (folder / "7_GELU.py").write_text(
        "import torch\nimport torch.nn as nn\n\n\nclass ModelNew(nn.Module):\n"
        "    def forward(self, x):\n        return torch.nn.functional.gelu(x)\n")
    tasks = [catalog.resolve(t, judged.config) for t in (RELU, "builtin/1/7_GELU")]
    out = tmp_path / "batch.jsonl"
    outcome = run_batch(judged, judged.config, tasks, str(folder), out,  # type: ignore[arg-type]
                        lambda *_: None)
    assert [r.status for r in outcome.results] == [Status.rejected, Status.ok]
    assert len(out.read_text().splitlines()) == 2


def test_colliding_fields_from_a_check_make_a_result() -> None:
    own = {"task": "t", "kind": "kernelbench", "solution": "s.py", "device": "cpu",
           "mode": "eager", "timer": "cpu", "stage_s": {}, "env": {}, "sandbox": []}
    forged = {"task": "x", "solution": "y", "status": "ok", "speedup": 9.0, "kind": "k"}
    result = assemble(forged, {"env": "nope", "max_abs_diff": [0.0]}, own)
    assert (result.task, result.solution, result.kind) == ("t", "s.py", "kernelbench")
    broken = assemble({"status": "fine"}, {}, own)
    assert broken.status == Status.runtime_error and "malformed" in (broken.error or "")
    json.loads(broken.model_dump_json())


def test_honest_candidates_keep_their_verdicts(judged: Evaluator) -> None:
    result = judged.evaluate(catalog.resolve(RELU, judged.config),
                             SOLUTIONS / "level1_2_ReLU_torch.py")
    assert result.status == Status.ok, result.error
    assert result.speedup_ci is not None and result.speedup_from == "paired"
    assert result.noise is not None and result.noise["calls_per_window"] >= 1
    assert "runner: own pid, ipc and mount namespaces" in result.sandbox or \
        "unsandboxed" in result.flags
