"""The judge's CPU clock on experiments shorter than a scheduler tick.

A process's CPU time, read by another process while it is on the CPU, lags by up to a tick
(4 ms at HZ=250); an experiment of about a millisecond then read as 0 ms, and a ratio of
two such readings was undefined.  The judge reads it after the run has left the CPU."""

from __future__ import annotations

import sys
from pathlib import Path

from kbtool_plugins.perf.judge import Judge, Version

WORKLOAD = '''
def load():
    import spin
    return spin.spin

def setup(seed):
    return seed

def experiment(spin, seed):
    return spin(seed)

def store_result(result):
    return result

def check_equivalence(reference, current):
    assert reference == current
'''


def test_a_millisecond_experiment_reads_its_cpu_time(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    # About a millisecond of pure Python on this machine: shorter than a tick.
    (tree / "spin.py").write_text(
        "def spin(seed):\n    x = seed\n    for i in range(20000):\n"
        "        x = (x * 31 + i) & 0xFFFF\n    return x & 0\n")
    scratch = tmp_path / "scratch"
    (scratch / "bench").mkdir(parents=True)
    workload = scratch / "bench" / "spin_workload.py"
    workload.write_text(WORKLOAD)
    judge = Judge(scratch, [], run_timeout_s=60)
    judge.seal()
    version = Version("base", Path(sys.executable), tree)
    for seed in range(5):
        run = judge.run(version, workload, seed)
        assert run.result == 0
        # Never more CPU than wall inside the window (one thread), and never nothing.
        assert 0 < run.experiment_cpu_ms <= run.experiment_ms + 1.0, run
        assert run.untimed_cpu_ms > 0 and run.cpu_ms >= run.experiment_cpu_ms, run
