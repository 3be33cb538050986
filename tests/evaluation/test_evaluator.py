"""The evaluator's verdicts on honest, broken and hostile candidates (real runs, CPU)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task import catalog
from tests.helpers import HOSTILE, REPO, SOLUTIONS, make_config, run_kbtool

RELU = "builtin/1/2_ReLU"
MATMUL = "builtin/1/1_Matmul"


def evaluate(ev: Evaluator, task_id: str, solution: Path) -> EvalResult:
    return ev.evaluate(catalog.resolve(task_id, ev.config), solution)


def test_honest_torch_candidate_is_ok(evaluator: Evaluator) -> None:
    result = evaluate(evaluator, RELU, SOLUTIONS / "level1_2_ReLU_torch.py")
    assert result.status == Status.ok, result.error
    assert result.correct and result.max_abs_diff == [0.0]
    assert result.timing is not None and result.timing.trials >= 5
    assert result.runtime_ms == result.timing.median_ms > 0
    # Paired: the reference was timed in the same windows, and the speedup has its interval.
    assert result.speedup_from == "paired" and result.remeasured is None
    assert result.baseline is not None and result.baseline_ms == result.baseline.median_ms
    low, high = result.speedup_ci
    assert low <= result.speedup <= high
    assert result.significant == (low > 1)
    assert result.noise is not None and ("noisy" in result.flags) == result.noisy
    assert result.correctness_trials == 2  # the quick profile
    assert result.env["torch_version"] and result.env["device"] == "cpu"
    assert {"load", "correctness", "timing"} <= set(result.stage_s)


def test_honest_fused_candidate_is_ok(evaluator: Evaluator) -> None:
    result = evaluate(evaluator, "builtin/2/1", SOLUTIONS / "level2_1_Linear_ReLU_Add_torch.py")
    assert result.status == Status.ok, result.error


def test_triton_candidate_runs_on_the_interpreter(evaluator: Evaluator) -> None:
    pytest.importorskip("triton")
    result = evaluate(evaluator, RELU, SOLUTIONS / "level1_2_ReLU_triton.py")
    assert result.status == Status.ok, result.error


@pytest.mark.slow
def test_cpp_load_inline_candidate_compiles_and_passes(evaluator: Evaluator) -> None:
    result = evaluate(evaluator, RELU, SOLUTIONS / "level1_2_ReLU_cpp.py")
    assert result.status == Status.ok, result.error


@pytest.mark.parametrize(("name", "status", "needle"), [
    ("wrong", Status.incorrect, "differ beyond atol"),
    ("syntax_error", Status.compile_error, "SyntaxError"),
    ("raises", Status.runtime_error, "RuntimeError: boom"),
    ("no_modelnew", Status.compile_error, "defines no class ModelNew"),
])
def test_broken_candidates_get_their_status(evaluator: Evaluator, name: str, status: Status,
                                            needle: str) -> None:
    result = evaluate(evaluator, MATMUL, SOLUTIONS / f"level1_1_Matmul_{name}.py")
    assert result.status == status
    assert not result.correct and result.speedup is None
    assert result.error and needle in result.error


def test_incorrect_reports_per_output_max_abs_diff(evaluator: Evaluator) -> None:
    result = evaluate(evaluator, MATMUL, SOLUTIONS / "level1_1_Matmul_wrong.py")
    assert len(result.max_abs_diff) == 1 and result.max_abs_diff[0] > 1.0


def test_wrong_shape_and_dtype_are_incorrect(evaluator: Evaluator, tmp_path: Path) -> None:
    shape = tmp_path / "shape.py"
    shape.write_text("import torch.nn as nn\nclass ModelNew(nn.Module):\n"
                     "    def forward(self, x):\n        return x.relu()[:-1]\n")
    dtype = tmp_path / "dtype.py"
    dtype.write_text("import torch, torch.nn as nn\nclass ModelNew(nn.Module):\n"
                     "    def forward(self, x):\n        return x.relu().double()\n")
    assert "shape" in (evaluate(evaluator, RELU, shape).error or "")
    result = evaluate(evaluator, RELU, dtype)
    assert result.status == Status.incorrect and "dtype" in (result.error or "")


def test_tolerance_is_configurable(tmp_path: Path) -> None:
    off = tmp_path / "off.py"
    off.write_text("import torch.nn as nn\nclass ModelNew(nn.Module):\n"
                   "    def forward(self, x):\n        return x.relu() + 1e-3\n")
    with Evaluator(make_config(tmp_path, device="cpu")) as strict:
        assert evaluate(strict, RELU, off).status == Status.incorrect
    loose = make_config(tmp_path, device="cpu", **{"tolerances.float32.atol": 1e-2})
    with Evaluator(loose) as ev:
        assert evaluate(ev, RELU, off).status == Status.ok


@pytest.fixture(scope="module")
def hostile_evaluator(tmp_path_factory: pytest.TempPathFactory):
    config = make_config(tmp_path_factory.mktemp("hostile"), device="cpu", timeout_s=15,
                         memory_limit_mb=1024, output_tail_chars=2000)
    with Evaluator(config) as ev:
        yield ev


@pytest.mark.parametrize(("name", "status", "needle"), [
    ("segfault", Status.runtime_error, "SIGSEGV"),
    ("infinite_loop", Status.timeout, "timed out"),
    ("huge_allocation", Status.runtime_error, "alloc"),
    ("growing_allocation", Status.runtime_error, ""),
    ("exits", Status.runtime_error, "exited with code 0"),
    ("exits_at_import", Status.compile_error, "SystemExit"),
    ("output_flood", Status.runtime_error, ""),
    # It writes junk into every descriptor it finds, its channel to the judge among them.
    ("stdin_thief", Status.rejected, "broke the protocol"),
    # Forking a process that imported torch is slow: on a busy machine the time limit may come
    # before the process limit does.  Either way it is contained.
    ("fork_bomb", (Status.runtime_error, Status.timeout),
     "Resource temporarily unavailable|timed out"),
    ("writes_home", Status.runtime_error, "Read-only file system"),
])
def test_hostile_candidates_are_contained(hostile_evaluator: Evaluator, name: str,
                                          status: Status | tuple[Status, ...],
                                          needle: str | None) -> None:
    result = evaluate(hostile_evaluator, RELU, HOSTILE / f"{name}.py")
    assert result.status in (status if isinstance(status, tuple) else (status,)), result.error
    assert needle is None or (result.error and re.search(needle, result.error))
    assert len(result.error or "") < 20_000  # output is kept as a bounded tail
    # The evaluator survives and still gives honest verdicts.
    after = evaluate(hostile_evaluator, RELU, SOLUTIONS / "level1_2_ReLU_torch.py")
    assert after.status == Status.ok


def test_each_candidate_gets_its_own_scratch(evaluator: Evaluator) -> None:
    first = evaluate(evaluator, RELU, HOSTILE / "reports_scratch.py").error or ""
    second = evaluate(evaluator, RELU, HOSTILE / "reports_scratch.py").error or ""
    dirs = dict(line.split("=", 1) for line in first.splitlines() if line.startswith(("TMPDIR=",
                "TORCH_EXTENSIONS_DIR=", "TRITON_CACHE_DIR=", "CWD=")))
    assert set(dirs) == {"TMPDIR", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR", "CWD"}
    scratch = Path(dirs["CWD"])
    for value in dirs.values():
        assert Path(value).is_relative_to(scratch)
    assert dirs["CWD"] not in second  # a fresh scratch per candidate
    assert not scratch.exists()  # and it is removed afterwards


def quiet_machine(monkeypatch: pytest.MonkeyPatch, load: float = 0.0) -> None:
    """The evaluator's view of the machine's load (this test machine is shared)."""
    from kbtool.evaluation import evaluator
    from kbtool.timing.noise import MachineState

    monkeypatch.setattr(evaluator, "machine_state", lambda: MachineState(load, 0, 1))


def test_baselines_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_machine(monkeypatch)
    # A generous CI target so that the measurement converges on a busy machine too.
    with Evaluator(make_config(tmp_path, device="cpu", target_rel_ci=0.5)) as ev:
        task = catalog.resolve(RELU, ev.config)
        first = ev.baseline(task, "eager")
        cached = list((tmp_path / "cache" / "baselines").glob("*.json"))
        assert len(cached) == 1 and first.stop_reason == "converged"
        assert ev.baseline(task, "eager") == first
    with Evaluator(make_config(tmp_path, device="cpu", target_rel_ci=0.5,
                               **{"sizes.batch_size": 8})) as ev:
        ev.baseline(catalog.resolve(RELU, ev.config), "eager")  # other sizes: other entry
    assert len(list((tmp_path / "cache" / "baselines").glob("*.json"))) == 2


def test_the_baseline_is_timed_as_the_judge_times_the_reference(tmp_path: Path) -> None:
    """The baseline timed alone (cached, `--solutions baseline`, progress lines) and the
    reference arm of a candidate's check time the same thing.  Timed apart on one fixed,
    cache-warm input set, ReLU's baseline came out 8-11x below the judge's reference arm,
    which reads never-seen inputs; the bound here is loose (3x) for a busy machine."""
    with Evaluator(make_config(tmp_path, device="cpu", target_rel_ci=0.1)) as ev:
        task = catalog.resolve(RELU, ev.config)
        null = tmp_path / "null.py"
        null.write_text(catalog.kind_of(task).null_candidate(task) or "")
        for _ in range(2):  # alternating, so that the machine's drift hits both
            alone = ev.baseline(task, "eager").median_ms
            paired = ev.evaluate(task, null).baseline_ms
            assert paired is not None and 1 / 3 < alone / paired < 3, (alone, paired)
            ev.cache = None  # time it again next round


def test_compile_mode_baseline(evaluator: Evaluator) -> None:
    config = evaluator.config.model_copy(update={"mode": "compile"})
    task = catalog.resolve(RELU, config)
    result = evaluator.evaluate(task, SOLUTIONS / "level1_2_ReLU_torch.py", config)
    assert result.status == Status.ok and result.mode == "compile"
    assert result.baseline is not None and result.baseline_ms > 0


REQUIRED_KEYS = {"task", "solution", "device", "mode", "status", "correct", "max_abs_diff",
                 "runtime_ms", "baseline_ms", "speedup", "speedup_ci", "significant",
                 "speedup_from", "noisy", "noise", "error", "flags", "env"}


def test_cli_eval_json_contract(tmp_path: Path) -> None:
    proc = run_kbtool("eval", "tasks/kernelbench/level1/2_ReLU.py", "--solution",
                      str(SOLUTIONS / "level1_2_ReLU_torch.py"), "--json", "--device", "cpu",
                      "--timer", "cpu", "--mode", "eager", "--config-profile", "quick",
                      cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) >= REQUIRED_KEYS
    assert data["status"] == "ok" and data["correct"] is True and data["timer"] == "cpu"
    assert data["speedup_ci"][0] <= data["speedup"] <= data["speedup_ci"][1]
    assert data["speedup_from"] == "paired"


def test_cli_eval_exit_codes(tmp_path: Path) -> None:
    wrong = run_kbtool("eval", MATMUL, "--solution", str(SOLUTIONS / "level1_1_Matmul_wrong.py"),
                       "--json", "--config-profile", "quick")
    assert wrong.returncode == 0  # the evaluation ran: the verdict is in the JSON
    assert json.loads(wrong.stdout)["status"] == "incorrect"
    for args in (["eval", MATMUL, "--solution", str(tmp_path / "missing.py")],
                 ["eval", "builtin/9/99", "--solution", str(SOLUTIONS / "level1_2_ReLU_torch.py")],
                 ["eval", MATMUL],
                 ["eval", MATMUL, "--solution", str(SOLUTIONS / "level1_1_Matmul_wrong.py"),
                  "--timer", "nope"],
                 ["eval", MATMUL, "--solution", str(SOLUTIONS / "level1_1_Matmul_wrong.py"),
                  "--timer", "cuda-events", "--device", "cpu"]):
        proc = run_kbtool(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("kbtool: error:")


def test_candidates_cannot_reach_the_network(hostile_evaluator: Evaluator, tmp_path: Path) -> None:
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    port = server.getsockname()[1]
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn.recv(100))
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    candidate = tmp_path / "connects.py"
    candidate.write_text(
        "import socket\nimport torch.nn as nn\n\nclass ModelNew(nn.Module):\n"
        "    def forward(self, x):\n"
        f"        socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')\n"
        "        return x.relu()\n")
    try:
        # The same connection works from the test process: the server is really there.
        socket.create_connection(("127.0.0.1", port), timeout=2).sendall(b"probe")
        result = evaluate(hostile_evaluator, RELU, candidate)
    finally:
        stop.set()
        thread.join(timeout=2)
        server.close()
    assert result.status == Status.runtime_error
    assert "Network is unreachable" in (result.error or "")
    assert accepted == [b"probe"]
    assert "no network" in result.sandbox


def orphans() -> set[str]:
    """kbtool evaluation processes (forked from a zygote) that lost their parent."""
    found = set()
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
            ppid = int((proc / "status").read_text().split("PPid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if b"kbtool.sandbox.zygote" in cmdline and ppid == 1:
            found.add(proc.name)
    return found


def test_nothing_outlives_a_candidate(hostile_evaluator: Evaluator) -> None:
    before = orphans()  # the machine is shared: other people's evaluations are not ours
    result = evaluate(hostile_evaluator, RELU, HOSTILE / "daemon.py")
    assert result.status == Status.ok
    time.sleep(0.5)
    assert not orphans() - before
    assert not (Path.home() / "kbtool-hostile-was-here.txt").exists()


def test_unconverged_baselines_are_not_cached(tmp_path: Path) -> None:
    with Evaluator(make_config(tmp_path, device="cpu", target_rel_ci=1e-9)) as ev:
        stats = ev.baseline(catalog.resolve(RELU, ev.config), "eager")
        # ... but the evaluator keeps it: a run's candidates rest on the baseline it timed
        assert ev.baseline(catalog.resolve(RELU, ev.config), "eager") == stats
    assert stats.stop_reason != "converged"
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_baselines_timed_on_a_busy_machine_are_not_cached(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    quiet_machine(monkeypatch, load=64.0)  # more runnable work than any machine has CPUs
    with Evaluator(make_config(tmp_path, device="cpu", target_rel_ci=0.5)) as ev:
        stats = ev.baseline(catalog.resolve(RELU, ev.config), "eager")
    assert stats.stop_reason == "converged"
    assert not list((tmp_path / "cache").rglob("*.json"))
