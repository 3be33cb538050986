"""Whatever ends kbtool ends its candidates: Ctrl-C during an evaluation leaves no process
behind (a candidate once ran on, past its time limit, after the zygote died)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from kbtool.config import load_config
from kbtool.evaluation.backend import LocalBackend
from kbtool.sandbox.namespaces import popen_tied
from kbtool.sandbox.zygote import Zygote
from tests.helpers import HOSTILE


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_ctrl_c_ends_the_candidate(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "kbtool", "eval", "builtin/1/2", "--solution",
         str(HOSTILE / "infinite_loop.py"), "--device", "cpu", "--config-profile", "quick",
         "timeout_s=120", f"cache_dir={tmp_path / 'cache'}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)  # its own process group, as under a terminal
    try:
        deadline = time.monotonic() + 120
        family: set[int] = set()
        # The zygote, the candidate's process and its PID-namespace init: three or more.
        while time.monotonic() < deadline and len(family) < 3:
            time.sleep(0.5)
            family = descendants(proc.pid)
        assert len(family) >= 3, f"the candidate never started: {family}"
        time.sleep(2)  # well inside the candidate's infinite loop
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C sends: the whole foreground group
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(alive(p) for p in family):
        time.sleep(0.2)
    left = [p for p in family if alive(p)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived kbtool: {left}"


def test_a_program_tied_to_kbtool_outlives_the_thread_that_started_it() -> None:
    """The parent-death signal is the starting *thread*'s: a program started by a thread that
    then returned was killed at once (every evaluator started by a pool lost its zygote)."""
    armed = ("import ctypes, signal, time\n"
             "ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))\n"
             "print('armed', flush=True)\n"
             "time.sleep(60)\n")
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        proc = popen_tied([sys.executable, "-c", armed], stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"armed\n"
        procs.append(proc)

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    try:
        time.sleep(0.5)
        assert procs[0].poll() is None, f"killed with the thread: {procs[0].returncode}"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_evaluators_started_side_by_side_keep_their_zygotes() -> None:
    backend = LocalBackend(load_config({"device": "cpu", "eval_workers": 2}))
    try:
        time.sleep(0.5)
        pids = []
        for evaluator in backend.all:
            proc = evaluator.zygote._proc
            assert proc is not None and proc.poll() is None, "the zygote died after start-up"
            pids.append(proc.pid)
        for evaluator, pid in zip(backend.all, pids, strict=True):
            assert evaluator.zygote.device("cpu") == "cpu"
            assert evaluator.zygote._proc is not None and evaluator.zygote._proc.pid == pid
    finally:
        backend.close()


def test_a_zygote_that_stopped_reading_is_replaced() -> None:
    """A zygote dying while a request is written: the unsent bytes must not raise again when
    its pipe is closed (a ``BrokenPipeError`` once failed a search's task that way)."""
    zygote = Zygote()
    # Alive, but nothing reads its stdin any more: every write to it is a broken pipe.
    zygote._proc = subprocess.Popen(["sh", "-c", "exec 0<&-; echo closed; exec sleep 2"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert zygote._proc.stdout is not None and zygote._proc.stdout.readline() == b"closed\n"
    try:
        assert zygote.device("cpu") == "cpu"
    finally:
        zygote.close()
