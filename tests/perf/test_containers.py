"""The perf check inside containers (``perf_engine=podman|apptainer``): the judge's runs in
fresh containers (what a run can reach there, how it ends), a whole check of real releases
through Podman (its REST socket, started here as tests/repo/test_containers.py does) and
Apptainer, and the one-line errors of an unknown or missing engine.  Each engine skips, with
the reason, where it is missing."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kbtool.config import Config
from kbtool.evaluation.evaluator import Evaluator
from kbtool.sandbox.containers import Apptainer, ContainerEngine, Podman, apptainer_binary
from kbtool.sandbox.isolation import Limits, run_isolated
from kbtool.task import catalog
from kbtool_plugins.perf import releases
from kbtool_plugins.perf.containers import ContainerLaunch
from kbtool_plugins.perf.judge import Judge, RunFailed, Version, Violation
from kbtool_plugins.perf.kind import payload_of, task_dir
from tests.helpers import make_config, run_kbtool
from tests.perf.conftest import QUICK, TASK, UTILS, edit
from tests.repo.test_containers import podman_socket  # noqa: F401  (a fixture)

# A module the runs import from their "tree": it looks at what the container lets it reach.
PROBE = '''
import errno, os, socket, subprocess, sys

def _write(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        return "written"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

def probe(hidden):
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=2).close()
        net = "connected"
    except OSError as exc:
        net = type(exc).__name__
    return {"venv": _write(os.path.join(sys.prefix, "probe.txt")),
            "tree": _write(os.path.join(os.path.dirname(__file__), "probe.txt")),
            "home": _write(os.path.join(os.environ["HOME"], "probe.txt")),
            "hidden": os.path.exists(hidden), "net": net,
            "interfaces": sorted(os.listdir("/sys/class/net")) if
                          os.path.isdir("/sys/class/net") else [],
            "pid": os.getpid()}

def linger():
    subprocess.Popen(["sleep", "30"], start_new_session=True)
    return "left one"

def die():
    os._exit(3)
'''
WORKLOAD = '''
def load():
    import probe_lib
    return probe_lib

def setup(seed):
    return seed

def experiment(api, data):
    return api.{call}

def store_result(result):
    return result

def check_equivalence(reference, current):
    assert reference == current
'''


@pytest.fixture(params=["podman", "apptainer"])
def engine(request: pytest.FixtureRequest) -> ContainerEngine:
    if request.param == "apptainer":
        if apptainer_binary() is None:
            pytest.skip("neither apptainer nor singularity is installed here (CI: bash "
                        ".ci/setup-apptainer.sh)")
        return Apptainer("perf_engine")
    return Podman(request.getfixturevalue("podman_socket"), "perf_engine")


def in_check_process(fn: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
    """``fn(scratch)`` in a forked, isolated child, as the perf check runs (its judge
    counts every child of its process as the run's, the podman service's too)."""
    outcome = run_isolated(lambda _: fn(Path.cwd()), Limits(timeout_s=300))
    assert outcome.value is not None, outcome.error or outcome.describe_exit()
    return dict(outcome.value)


def contained_judge(base: Path, engine: ContainerEngine, call: str) -> tuple[Judge, Version,
                                                                            Path]:
    """A judge whose runs start in containers of ``engine``; a "tree" holding the probe (run
    by kbtool's own Python: its venv plays the version's) and a workload calling ``call``."""
    tree = base / "tree"
    tree.mkdir(parents=True)
    (tree / "probe_lib.py").write_text(PROBE)
    scratch = base / "scratch"
    bench = scratch / "bench"
    bench.mkdir(parents=True)
    workload = bench / "probe.py"
    workload.write_text(WORKLOAD.replace("{call}", call))
    judge = Judge(scratch, [tree], 60, ContainerLaunch(engine, bench, 1024, 64))
    judge.seal()
    return judge, Version("agent", Path(sys.executable), tree), workload


def test_a_run_in_a_container_reaches_only_its_scratch(engine: ContainerEngine) -> None:
    def probe(base: Path) -> dict[str, Any]:
        hidden = base / "human-tree"
        hidden.mkdir()
        judge, version, workload = contained_judge(base, engine, f"probe({str(hidden)!r})")
        run = judge.run(version, workload, seed=7)
        return {"seen": run.result, "times": [run.experiment_ms, run.load_ms, run.setup_ms,
                                             run.cpu_ms, run.lifetime_ms],
                "cpu": [run.untimed_cpu_ms, run.experiment_cpu_ms],
                "written": (base / "tree" / "probe.txt").exists(),
                "left": os.listdir(base / "scratch" / "runs")}

    found = in_check_process(probe)
    seen = found["seen"]
    assert seen["venv"] == "EROFS" and seen["tree"] == "EROFS", seen   # read-only binds
    assert seen["home"] == "written"                                    # its private /tmp
    assert seen["hidden"] is False                                      # only its own tree
    assert seen["net"] != "connected" and seen["interfaces"] in ([], ["lo"]), seen
    assert not found["written"] and found["left"] == []
    # The judge's clock and the launcher's accounting, as for a local run.
    experiment, load, setup, cpu, lifetime = found["times"]
    assert experiment > 0 and load > 0 and setup >= 0 and cpu > 0
    assert lifetime > experiment + load
    # The launcher read the run's CPU clock when it passed `go` on (the judge cannot).
    untimed_cpu, experiment_cpu = found["cpu"]
    assert 0 < untimed_cpu < cpu and experiment_cpu >= 0


def test_a_run_that_leaves_a_process_or_dies_is_caught(engine: ContainerEngine) -> None:
    def misbehave(base: Path) -> dict[str, Any]:
        found = {}
        for call in ("linger()", "die()"):
            judge, version, workload = contained_judge(base / call[:-2], engine, call)
            try:
                judge.run(version, workload, seed=1)
                found[call] = "no error"
            except (Violation, RunFailed) as exc:
                found[call] = f"{type(exc).__name__}: {exc}"
        return found

    found = in_check_process(misbehave)
    assert found["linger()"].startswith("Violation: ") and "outlived it" in found["linger()"]
    assert found["die()"].startswith("RunFailed: the workload process exited with code 3 "
                                     "during experiment"), found["die()"]


# -- a whole check of real releases -------------------------------------------------------------
def contained_config(perf_cache: Path, tmp: Path, name: str) -> Config:
    return make_config(tmp, device="cpu", cache_dir=str(perf_cache), perf_engine=name, **QUICK)


@pytest.fixture(scope="module")
def podman_evaluator(perf_cache: Path, podman_socket: str,  # noqa: F811
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluator]:
    old = os.environ.get("CONTAINER_HOST")
    os.environ["CONTAINER_HOST"] = podman_socket
    try:
        config = contained_config(perf_cache, tmp_path_factory.mktemp("podman"), "podman")
        with Evaluator(config) as evaluator:
            yield evaluator
    finally:
        if old is None:
            os.environ.pop("CONTAINER_HOST", None)
        else:
            os.environ["CONTAINER_HOST"] = old


def check_releases(evaluator: Evaluator, tmp_path: Path, engine: str) -> None:
    """The human's improvement as the agent's patch: the same verdict and figures as the
    local check (tests/perf/test_eval.py); a wrong patch: incorrect."""
    config = evaluator.config
    task = catalog.resolve(TASK, config)
    where = releases.locate(payload_of(task), config, task_dir(task))
    patch = tmp_path / "human.diff"
    patch.write_text(where.human_patch.read_text())
    result = evaluator.evaluate(task, patch).model_dump(mode="json")
    assert result["status"] == "ok" and result["correct"] is True, result["error"]
    assert result["engine"] == engine and result["tests"].endswith("s")
    low, high = result["speedup_ci"]
    assert low <= result["speedup"] <= high and result["speedup"] > 1.2
    # The human release is a real gain; 4 rounds on a busy machine read it as low as 1.195x.
    assert result["human_speedup"] > 1.1 and result["rounds"] >= QUICK["perf.min_rounds"]
    figures = result["workloads"][0]
    assert figures["baseline_ms"] > figures["agent_ms"] > 0 and figures["human_ms"] > 0
    print(f"\n{engine}: speedup {result['speedup']:.2f}x {result['speedup_ci']}, human "
          f"{result['human_speedup']:.2f}x {result['human_speedup_ci']}, "
          f"{result['rounds']} rounds, flags {result['flags']}")

    text = (where.baseline_tree / UTILS).read_text()
    wrong = releases.file_diff(UTILS, text, edit(
        text, '    value = _canonicalize_regex.sub("-", name).lower()\n',
        '    value = name\n'))
    patch.write_text(wrong)
    result = evaluator.evaluate(task, patch).model_dump(mode="json")
    assert result["status"] == "incorrect" and "not equivalent" in result["error"], result


def test_podman_checks_like_the_sandbox(podman_evaluator: Evaluator, tmp_path: Path) -> None:
    check_releases(podman_evaluator, tmp_path, "podman")


def test_apptainer_checks_like_the_sandbox(perf_cache: Path, tmp_path: Path) -> None:
    if apptainer_binary() is None:
        pytest.skip("neither apptainer nor singularity is installed here (CI: bash "
                    ".ci/setup-apptainer.sh)")
    with Evaluator(contained_config(perf_cache, tmp_path, "apptainer")) as evaluator:
        check_releases(evaluator, tmp_path, "apptainer")


# -- the settings ---------------------------------------------------------------------------
def test_an_unknown_or_missing_engine_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.diff"
    empty.write_text("")
    base = ("eval", TASK, "--solution", str(empty), f"cache_dir={tmp_path / 'cache'}")
    unknown = run_kbtool(*base, "perf_engine=docker")
    assert unknown.returncode == 2, unknown.stderr
    assert unknown.stderr.strip() == ("kbtool: error: config key 'perf_engine': Input should "
                                      "be 'local', 'podman' or 'apptainer' (got 'docker')")
    socket = run_kbtool(*base, "perf.perf_engine=podman",
                        env={"CONTAINER_HOST": f"unix://{tmp_path}/no.sock"})
    assert socket.returncode == 2 and len(socket.stderr.strip().splitlines()) == 1
    assert "perf_engine=podman: the Podman REST socket" in socket.stderr
    # No apptainer on PATH (an empty PATH where one is installed).
    binary = run_kbtool(*base, "perf_engine=apptainer", env={"PATH": str(tmp_path)})
    assert binary.returncode == 2, binary.stderr
    assert binary.stderr.strip() == ("kbtool: error: perf_engine=apptainer: neither "
                                     "apptainer nor singularity is on PATH")
