"""``run_isolated(settle=True)``: the result comes back while the child still ends its own
work (``Reporter.after_result``); ``wait_settled`` then finds it reaped and its scratch gone."""

from __future__ import annotations

import os
import time
from pathlib import Path

from kbtool.sandbox.isolation import Limits, Reporter, run_isolated, wait_settled
from kbtool.sandbox.namespaces import SandboxPolicy


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_result_comes_back_before_the_child_has_ended(tmp_path: Path) -> None:
    release = tmp_path / "release"
    seen = tmp_path / "seen"

    def fn(report: Reporter) -> int:
        def teardown() -> None:  # ends only once the test says so (or after 60 s)
            seen.write_text(f"{os.getpid()} {Path.cwd()}")
            until = time.monotonic() + 60
            while not release.exists() and time.monotonic() < until:
                time.sleep(0.01)

        report.after_result(teardown)
        return 42

    outcome = run_isolated(fn, Limits(timeout_s=120, sandbox=SandboxPolicy("off")),
                           settle=True)
    assert outcome.value == 42 and outcome.error is None
    until = time.monotonic() + 60
    while not seen.exists() and time.monotonic() < until:
        time.sleep(0.01)
    pid, scratch = seen.read_text().split()
    assert alive(int(pid))  # still in its teardown: the caller was not kept waiting
    release.write_text("")
    wait_settled(60)
    assert not alive(int(pid)) and not Path(f"/proc/{pid}").exists()  # ended and reaped
    assert not Path(scratch).exists()
