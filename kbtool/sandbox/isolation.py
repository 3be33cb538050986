"""Run a function in a forked child: its own session, scratch dir and limits.

The calling process imports torch once and stays free of candidate code; each candidate
runs in a child forked from it, so the PyTorch import is not paid per candidate.  A child
that crashes, hangs, exits or allocates without bound only ends itself: the parent reads
its stage reports from a pipe and returns an :class:`Outcome` with the tail of its output.

The parent must not have run torch ops or initialised CUDA before forking (OpenMP and CUDA
state do not survive ``fork``); kbtool only imports torch in the parent.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kbtool.sandbox import cgroups
from kbtool.sandbox import namespaces as sandbox
from kbtool.sandbox.namespaces import SandboxPolicy

_POLL_S = 0.02
# A child's progress lines (Reporter.progress), logged where the evaluation runs.
_progress_log = logging.getLogger("kbtool.progress")
WAIT_STAGE = "device_wait"  # a stage that does not count against the time limit
_GROUP_REMOVAL_S = 30.0  # a killed evaluation's processes end within this (else: swept later)


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 300.0
    memory_mb: int = 8192
    output_tail_chars: int = 10000
    # RLIMIT_AS stops one huge allocation at once, but CUDA reserves vast virtual ranges:
    # on GPUs the parent's RSS watch is the only memory limit.
    address_space_limit: bool = True
    sandbox: SandboxPolicy = field(default_factory=SandboxPolicy)


@dataclass
class Outcome:
    value: Any = None            # what the function returned (JSON round-tripped)
    error: str | None = None     # an exception that escaped the function
    stage: str | None = None     # the last stage the child reported
    stage_s: dict[str, float] = field(default_factory=dict)
    exit_code: int | None = None
    signal: int | None = None
    timed_out: bool = False
    memory_exceeded: bool = False
    output: str = ""
    wall_s: float = 0.0
    sandbox: list[str] = field(default_factory=list)  # what confinement applied

    def describe_exit(self) -> str:
        if self.timed_out:
            return "timed out"
        if self.memory_exceeded:
            return "exceeded the memory limit"
        if self.signal is not None:
            return f"was killed by signal {signal.Signals(self.signal).name}"
        return f"exited with code {self.exit_code} before reporting a result"


class Reporter:
    """Child side of the pipe: stage changes and the final result, one JSON line each.
    ``started`` is when the child's time limit started to count (``time.monotonic()``)."""

    def __init__(self, fd: int, started: float | None = None) -> None:
        self._fd = fd
        self.started = time.monotonic() if started is None else started

    def send(self, message: dict[str, Any]) -> None:
        data = (json.dumps(message, default=str) + "\n").encode()
        while data:
            data = data[os.write(self._fd, data):]

    def stage(self, name: str) -> None:
        self.send({"stage": name, "t": time.monotonic()})

    def progress(self, line: str) -> None:
        """One line on how a long step is going: the evaluating process logs it (a
        terminal, a batch job's log)."""
        self.send({"progress": line[:300]})


_SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH")


def looks_secret(name: str) -> bool:
    """An environment variable no evaluation child gets (provider keys, tokens)."""
    return any(word in name.upper() for word in _SECRET_WORDS)


def scratch_env(scratch: Path) -> dict[str, str]:
    """Per-candidate temp and compiler cache dirs, so candidates never share build state."""
    return {
        "TMPDIR": str(scratch / "tmp"),
        "TORCH_EXTENSIONS_DIR": str(scratch / "torch_extensions"),
        "TRITON_CACHE_DIR": str(scratch / "triton_cache"),
        "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor_cache"),
    }


def _child(fn: Callable[[Reporter], Any], write_fd: int, output_fd: int, scratch: Path,
           env: dict[str, str], limits: Limits, groups: _Groups, started: float) -> None:
    code = 1
    reporter = Reporter(write_fd, started)
    try:
        sandbox.die_with_parent()
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        env = {**scratch_env(scratch), **env}
        for name in [n for n in os.environ if looks_secret(n)]:
            del os.environ[name]
        for value in scratch_env(scratch).values():
            Path(value).mkdir(parents=True, exist_ok=True)
        os.environ.update(env)
        tempfile.tempdir = None
        os.chdir(scratch)
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        # Nothing else of the parent's stays open: not its request pipe (stdin), not its
        # reply pipe, not other children's pipes.
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sandbox.close_fds([write_fd, *groups.fds()])
        # Fresh stream objects: the parent's may hold buffered text or locks of other threads.
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if limits.address_space_limit:
            extra = limits.memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_AS, (_vm_size() + extra, _vm_size() + extra))
        if groups.main is not None:
            groups.main.join()
        # The judge's runners get groups of their own beside this one.
        cgroups.use_for_runners(groups.whole if groups.whole is not None else groups.why)
        applied = sandbox.enter(scratch, limits.sandbox, groups.main,
                                lambda pid: reporter.send({"pid": pid}))
        reporter.send({"sandbox": applied})
        value = fn(reporter)
        reporter.send({"result": value, "t": time.monotonic()})
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            reporter.send({"error": traceback.format_exc()})
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


@dataclass
class _Groups:
    """An evaluation's cgroup: ``whole`` holds ``main`` (the child and what it starts, with
    the process cap) and the groups of the runners a judge starts; or why there is none."""

    whole: cgroups.Group | None
    main: cgroups.Group | None
    why: str = ""

    @classmethod
    def make(cls, policy: SandboxPolicy) -> _Groups:
        try:
            whole = cgroups.Group.make()
        except cgroups.CgroupUnavailable as exc:
            return cls(None, None, str(exc))
        try:
            main = whole.child("main", max_processes=(policy.max_processes
                                                      if policy.mode != "off" else None))
        except cgroups.CgroupUnavailable as exc:
            whole.remove()
            return cls(None, None, str(exc))
        return cls(whole, main)

    def fds(self) -> list[int]:
        return [*(self.whole.fds() if self.whole else []), *(self.main.fds() if self.main else [])]


def _vm_size() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def _rss_bytes(pid: int) -> int:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3: poll instead
        return None


def _drain(fd: int) -> bytes:
    """What is left in a pipe (at most 1 MiB), without waiting for writers that may never
    close it."""
    os.set_blocking(fd, False)
    data = b""
    try:
        while len(data) < 1 << 20 and (chunk := os.read(fd, 1 << 16)):
            data += chunk
    except BlockingIOError:
        pass
    return data


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def run_isolated(fn: Callable[[Reporter], Any], limits: Limits, env: dict[str, str] | None = None,
                 scratch_root: Path | None = None) -> Outcome:
    """Fork, run ``fn(reporter)`` in the child, and collect what happened."""
    scratch = Path(tempfile.mkdtemp(prefix="kbtool-", dir=scratch_root))
    read_fd, write_fd = os.pipe()
    out_read, out_write = os.pipe()
    groups = _Groups.make(limits.sandbox)
    sys.stdout.flush()
    sys.stderr.flush()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_fd)
        os.close(out_read)
        _child(fn, write_fd, out_write, scratch, env or {}, limits, groups, start)
    os.close(write_fd)
    os.close(out_write)
    outcome = Outcome()
    stage_start: dict[str, float] = {}
    buffer = b""
    # Only the tail of the output is kept: a candidate that prints without end costs CPU
    # time until its timeout, never memory or disk.
    tail = bytearray()
    keep = max(4 * limits.output_tail_chars, 1)
    status: int | None = None
    open_fds = {read_fd, out_read}
    pidfd = _pidfd(pid)  # readable when the child exits: no polling delay at the end
    finished_at: list[float] = []
    watched_pid = [pid]
    waited = [0.0]  # seconds spent in WAIT_STAGE: they extend the deadline
    deadline = start + limits.timeout_s
    memory_cap = limits.memory_mb * 1024 * 1024

    def handle(line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return  # something wrote garbage into our pipe; the result decides
        if not isinstance(message, dict):
            return
        if isinstance(message.get("stage"), str):
            now = message.get("t")
            now = now if isinstance(now, float) else time.monotonic()
            if outcome.stage == WAIT_STAGE:  # waiting for the device is not the candidate's time
                waited[0] += now - stage_start[WAIT_STAGE]
            outcome.stage = message["stage"]
            stage_start[message["stage"]] = now
        elif "result" in message:
            outcome.value = message["result"]
            finished_at.append(message["t"] if isinstance(message.get("t"), float)
                               else time.monotonic())
        elif isinstance(message.get("error"), str):
            outcome.error = message["error"]
        elif isinstance(message.get("sandbox"), list):
            # The child says what confined it; a judge adds what confines its runners.
            outcome.sandbox += [str(item) for item in message["sandbox"]]
        elif isinstance(message.get("pid"), int):
            watched_pid[0] = message["pid"]  # the child's process in its namespace
        elif isinstance(message.get("progress"), str):
            _progress_log.info("%s", message["progress"][:300].replace("\n", " "))

    try:
        while status is None:
            watched = [*open_fds, *([pidfd] if pidfd is not None else [])]
            if watched:
                ready, _, _ = select.select(watched, [], [], _POLL_S)
                for fd in ready:
                    if fd == pidfd:
                        continue  # reaped below
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        open_fds.discard(fd)
                    elif fd == out_read:
                        tail += chunk
                        del tail[:-keep]
                    else:
                        buffer += chunk
                        *lines, buffer = buffer.split(b"\n")
                        for line in lines:
                            handle(line)
            else:
                time.sleep(_POLL_S / 4)
            done, raw = os.waitpid(pid, os.WNOHANG)
            if done:
                status = raw
                break
            waiting = outcome.stage == WAIT_STAGE
            if not waiting and time.monotonic() > deadline + waited[0]:
                outcome.timed_out = True
            elif _rss_bytes(watched_pid[0]) > memory_cap:
                outcome.memory_exceeded = True
            if outcome.timed_out or outcome.memory_exceeded:
                _kill_group(pid)
                _, status = os.waitpid(pid, 0)
        end = time.monotonic()
        _kill_group(pid)  # anything the candidate left running in its session
        buffer += _drain(read_fd)
        tail += _drain(out_read)
        for line in buffer.split(b"\n"):
            if line.strip():
                handle(line)
    finally:
        for open_fd in (read_fd, out_read, pidfd):
            if open_fd is not None:
                os.close(open_fd)
    outcome.wall_s = end - start
    assert status is not None
    if os.WIFSIGNALED(status):
        outcome.signal = os.WTERMSIG(status)
    else:
        outcome.exit_code = os.WEXITSTATUS(status)
    # A stage lasts until the next one starts; the last one until the result was sent
    # (process teardown is harness overhead, not the candidate's time).
    ordered = sorted(stage_start.items(), key=lambda kv: kv[1])
    ends = [t for _, t in ordered[1:]] + [finished_at[0] if finished_at else end]
    for (name, t0), t1 in zip(ordered, ends[:len(ordered)], strict=True):
        outcome.stage_s[name] = round(t1 - t0, 6)
    if groups.whole is not None:  # the kernel may still be ending its processes: no wait
        groups.whole.kill()
        threading.Thread(target=groups.whole.remove, args=(_GROUP_REMOVAL_S,),
                         daemon=True).start()
    chars = limits.output_tail_chars
    outcome.output = tail.decode("utf-8", errors="replace")[-chars:] if chars else ""
    shutil.rmtree(scratch, ignore_errors=True)
    return outcome
