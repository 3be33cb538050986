"""The runner's boundary (docs/integrity.md#the-sandbox): every process a candidate starts
is in its runner's cgroup (CPU time counted whoever reaps it, memory capped wherever it is
held, all of it killed at the end) and it can make no namespace to hide in.  Each candidate
in tests/redteam here passed on the judge that counted the processes /proc showed it."""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from kbtool.evaluation.evaluator import Evaluator
from kbtool.evaluation.result import Status
from kbtool.sandbox import cgroups, seccomp
from kbtool.task import catalog
from tests.helpers import REDTEAM, SOLUTIONS, make_config

RELU = "builtin/1/2_ReLU"
REFUSED = "Operation not permitted"
MEMORY = "exceeded the memory limit"


@pytest.fixture(scope="module")
def bounded(tmp_path_factory: pytest.TempPathFactory):
    # The hoarders hold 768 MB: over this limit, far under the machine's memory.
    config = make_config(tmp_path_factory.mktemp("bounded"), device="cpu", memory_limit_mb=512,
                         correctness_trials=2)
    with Evaluator(config) as ev:
        yield ev


def evaluate(ev: Evaluator, solution: Path):
    return ev.evaluate(catalog.resolve(RELU, ev.config), solution)


def unavailable(needs: str) -> str | None:
    """Why this machine cannot give a runner ``needs`` (a cgroup counting CPU time and
    memory, a seccomp filter); None if it can."""
    if needs == "seccomp":
        arch = platform.machine()
        return None if arch in seccomp._ARCHES else f"no seccomp filter for {arch}"
    try:
        group = cgroups.Group.make()
    except cgroups.CgroupUnavailable as exc:
        return str(exc)
    group.remove()
    return None if group.counts("memory") else "no memory controller for kbtool's cgroups"


@pytest.mark.parametrize(("name", "status", "needle", "needs"), [
    # Work out of the judge's sight: in a nested PID namespace, during and between calls.
    ("nested_pid_helper", Status.compile_error, REFUSED, "seccomp"),
    ("unshare_worker", Status.compile_error, REFUSED, "seccomp"),
    ("nested_fork_bomb", Status.compile_error, REFUSED, "seccomp"),
    # Work in processes the kernel reaps for nobody: their CPU time is in no /proc counter.
    ("reaped_by_nobody", Status.rejected, "works outside its timed windows", "cgroup"),
    # Memory in no process's resident set.
    ("memfd_hoard", Status.compile_error, MEMORY, "cgroup"),
    ("sysv_hoard", Status.compile_error, MEMORY, "cgroup"),
])
def test_hidden_processes_and_memory_are_caught(bounded: Evaluator, name: str, status: Status,
                                                needle: str, needs: str) -> None:
    why = unavailable(needs)
    if why:
        pytest.skip(f"the runner's {needs} is unavailable here: {why}")
    result = evaluate(bounded, REDTEAM / f"{name}.py")
    assert result.status == status, (result.status, result.error)
    assert re.search(needle, result.error or ""), result.error
    assert result.speedup is None and not result.correct


def test_honest_candidates_are_unaffected(bounded: Evaluator) -> None:
    result = evaluate(bounded, SOLUTIONS / "level1_2_ReLU_torch.py")
    assert result.status == Status.ok, result.error
    assert set(result.flags) <= {"no_custom_kernel", "noisy", "few_trials"}, result.findings
    assert any("no new namespaces" in s for s in result.sandbox) == (
        unavailable("seccomp") is None), result.sandbox
    if unavailable("cgroup") is None:  # its memory limit is the one set
        assert any(s.startswith("runner cgroup (") and "memory<=512 MiB" in s
                   for s in result.sandbox), result.sandbox
