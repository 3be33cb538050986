"""The proof of the seam: a task kind the core has never heard of, installed from a fixture
distribution through the ``kbtool`` entry-point group (tests/fixtures/kbtool-pyfunc-kind:
"make this pure-Python function faster"), runs through ``kbtool eval``, ``kbtool run``
with the replay provider, ``kbtool report`` and the monitor's model of a run."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kbtool.monitor.state import RunFollower
from tests.helpers import FIXTURES, install_distribution, run_with_site

KIND = FIXTURES / "kbtool-pyfunc-kind"
TRANSCRIPT = KIND / "src" / "kbtool_pyfunc" / "transcript.yaml"
GOOD = "def fast(n):\n    return (n - 1) * n * (2 * n - 1) // 6\n"
WRONG = "def fast(n):\n    return n * n\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_distribution(KIND, tmp_path_factory.mktemp("pyfunc-site"),
                                tmp_path_factory.mktemp("pyfunc-src"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pyfunc-cache")


def kbtool(site: Path, cache: Path, *args: str, cwd: Path | None = None
           ) -> subprocess.CompletedProcess[str]:
    return run_with_site(site, cache, *args, cwd=cwd, KBTOOL_LOAD_PLUGINS="pyfunc")


def test_tasks_of_the_new_kind_are_listed_and_shown(site: Path, cache: Path) -> None:
    listed = kbtool(site, cache, "tasks", "list", "pyfunc")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["pyfunc/1/1_sum_squares", "pyfunc/1/2_count_vowels"]
    shown = kbtool(site, cache, "tasks", "show", "pyfunc/1/1", "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["kind"] == "pyfunc" and data["cases"] == 20



def test_the_warm_process_loads_only_what_the_kind_preloads(site: Path, cache: Path,
                                                            tmp_path: Path) -> None:
    """The zygote imports a kind's ``preload`` when it first meets a task of that kind: a
    check of this kind (no preload) runs where neither KernelBench's torch nor scipy is."""
    solution = tmp_path / "fast.py"
    solution.write_text("import sys\n\nHEAVY = sorted({'torch', 'scipy'} & set(sys.modules))\n\n\n"
                        "def fast(n):\n    assert not HEAVY, f'imported before the check: {HEAVY}'\n"
                        "    return (n - 1) * n * (2 * n - 1) // 6\n")
    proc = kbtool(site, cache, "eval", "pyfunc/1/1_sum_squares", "--solution", str(solution),
                  "--json", "--device", "cpu", "--config-profile", "quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok", result["error"]
    assert result["env"]["torch_version"] and result["env"]["num_threads"] >= 1

@pytest.mark.parametrize(("candidate", "status"), [(GOOD, "ok"), (WRONG, "incorrect"),
                                                   ("def fast(:\n", "compile_error")])
def test_eval_judges_the_new_kind(site: Path, cache: Path, tmp_path: Path, candidate: str,
                                  status: str) -> None:
    solution = tmp_path / "fast.py"
    solution.write_text(candidate)
    proc = kbtool(site, cache, "eval", "pyfunc/1/1_sum_squares", "--solution", str(solution),
                  "--json", "--device", "cpu", "--config-profile", "quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == status, result
    assert result["kind"] == "pyfunc" and result["mode"] == "reference"
    if status == "ok":
        assert result["cases"] == 20 and result["speedup"] > 1  # a closed form beats a loop
    else:
        assert result["speedup"] is None


def test_run_report_and_monitor_of_the_new_kind(site: Path, cache: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = kbtool(site, cache, "run", "pyfunc/1/1_sum_squares", "pyfunc/1/2_count_vowels",
                  f"model_name=replay/{TRANSCRIPT}", "num_samples=2", "num_phases=1",
                  "max_fix_attempts=1", f"run_dir={run_dir}", "--config-profile", "quick",
                  "device=cpu", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["baselines"] == ["reference"] and summary["mode"] == "reference"
    squares = summary["tasks"]["pyfunc/1/1_sum_squares"]
    assert squares["correct"] and squares["speedup"]["reference"] > 1
    assert squares["statuses"].get("incorrect", 0) >= 1  # the transcript's wrong answer
    # Progress lines for every evaluation, although stderr is no terminal.
    assert proc.stderr.count("eval pyfunc/1/1_sum_squares/p0/") >= 2, proc.stderr

    report = kbtool(site, cache, "report", str(run_dir), "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["baselines"] == ["reference"]
    assert data["fast_p"]["reference"]["1.0"] == 1.0  # both functions made faster
    assert data["kinds"]["pyfunc"]["tasks"]["pyfunc/1/1_sum_squares"]["ok"] >= 1
    table = kbtool(site, cache, "report", str(run_dir))
    assert "pyfunc: candidates per function" in table.stdout

    follower = RunFollower(run_dir)
    follower.poll()
    state = follower.state
    assert state.baselines == ["reference"] and state.eval_mode == "reference"
    task = state.tasks["pyfunc/1/1_sum_squares"]
    assert task.status == "done" and task.correct >= 1
    assert task.speedup("reference", state.eval_mode) == pytest.approx(
        squares["speedup"]["reference"])


def test_the_new_kind_keeps_the_contract(site: Path) -> None:
    import sys

    from kbtool.config import Config
    from kbtool.task.contract import check_kind, check_task

    sys.path.insert(0, str(site))
    try:
        import kbtool_pyfunc

        kind = kbtool_pyfunc.PyFuncKind()
        assert check_kind("pyfunc", kind) == []
        for task in kbtool_pyfunc.PyFuncSource().tasks(Config()):
            assert check_task(kind, task) == []
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("kbtool_pyfunc", None)
