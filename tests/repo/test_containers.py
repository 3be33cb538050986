"""The same check inside containers: Podman through podman-py (its REST socket, started here)
and Apptainer through spython (CI installs both: .ci/setup-podman.sh, .ci/setup-apptainer.sh);
each skips, with the reason, where its engine is missing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbtool_plugins.repo.candidate import reindent
from kbtool_plugins.repo.containers import Apptainer, Podman, apptainer_binary
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.runner import Engine, RunRequest, RunResult, run_item
from tests.repo.test_runner import HOSTILE, LIMITS, TESTS, TEXT, method


def podman_missing() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (CI: bash .ci/setup-podman.sh)"
    if os.getuid() != 0:
        return "the container test runs rootful podman"
    try:
        info = subprocess.run(["podman", "info"], capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`podman info` did not answer within 60 s"
    return None if info.returncode == 0 else "`podman info` fails here"


@pytest.fixture(scope="module")
def podman_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = podman_missing()
    if reason:
        pytest.skip(reason)
    sock = tmp_path_factory.mktemp("podman") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        for _ in range(200):
            if sock.exists():
                break
            time.sleep(0.05)
        else:
            pytest.skip("podman system service did not open its socket")
        yield f"unix://{sock}"
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(timeout=30)


def check(repo: Repository, engine: Engine, candidate: str | None) -> RunResult:
    wrap = method(repo, TEXT, "wrap")
    request = RunRequest(file_path=TEXT, start_line=wrap.decorator_line, end_line=wrap.end_line,
                         replace_content=None if candidate is None else reindent(candidate, ""),
                         tests=TESTS)
    return run_item(repo, request, LIMITS, engine=engine)


def judges_like_the_sandbox(repo: Repository, engine: Engine) -> None:
    """The honest candidate passes, the hostile ones fail or are rejected, as in the sandbox."""
    honest = check(repo, engine, (HOSTILE / "honest.py").read_text())
    assert honest.status == "passed", honest.report()
    assert "read-only container workspace" in honest.sandbox
    for name, statuses in (("fake_ok_exit", {"failed"}), ("forges_records", {"rejected"}),
                           ("writes_test_file", {"failed"}), ("skips", {"failed"})):
        result = check(repo, engine, (HOSTILE / f"{name}.py").read_text())
        assert result.status in statuses, (name, result.report())
    # The write failed inside the container; the pristine tree never saw it.
    assert "weakened" not in (repo.src / "tests" / "utils_tests" / "test_text.py").read_text()


def test_podman_judges_like_the_sandbox(django: Repository, podman_socket: str) -> None:
    judges_like_the_sandbox(django, Podman(podman_socket))


def test_apptainer_judges_like_the_sandbox(django: Repository) -> None:
    if apptainer_binary() is None:
        pytest.skip("neither apptainer nor singularity is installed here (CI: bash "
                    ".ci/setup-apptainer.sh)")
    engine = Apptainer()
    pristine = check(django, engine, None)
    assert pristine.status == "passed", pristine.report()
    judges_like_the_sandbox(django, engine)


def test_an_engine_that_is_not_there_is_infrastructure(django: Repository,
                                                        tmp_path: Path) -> None:
    result = check(django, Podman(f"unix://{tmp_path}/no.sock"), None)
    assert result.status == "infrastructure"
