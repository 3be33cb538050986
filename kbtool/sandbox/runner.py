"""Runners: processes a judge starts to run code it does not trust, and what it sees of them.

A judge (a task kind's check, in an isolated child of the zygote) forks its runners first,
before it runs a torch op (OpenMP does not survive ``fork``).  Each runner gets its own
session, a scrubbed environment, its own scratch directory and, inside the judge's sandbox,
namespaces of its own (``namespaces.confine_runner``); it then serves the judge's requests
over a :class:`~kbtool.sandbox.channel.Channel` until told to stop.

Each runner is a cgroup of its own (``kbtool.sandbox.cgroups``) where one can be made: it
joins it before anything else, so every process it ever starts is counted there, in nested
PID namespaces (which its seccomp filter refuses anyway) or not, alive, exited or reaped by
nobody.  The judge never believes a runner about time, memory or life: :meth:`Runner.ask`
waits for a reply with the judge's own deadline, watches its memory (the kernel caps the
group's and kills within it; the judge ends the rest) and notices when it dies;
:meth:`Runner.cpu_ns` reads the group's CPU time, so work a runner does while it should be
idle (between timed windows) can be seen; :meth:`Runner.kill` ends the whole group.  Where
no cgroup can be made (rootless without delegation), the runner says so in its ``sandbox``
list, :attr:`Runner.counted` is False, and the same is read from ``/proc`` for the
processes it can see there: its PID namespace, or its descendants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from kbtool.sandbox import cgroups, namespaces
from kbtool.sandbox.channel import Channel, ChannelClosed, socket_pair
from kbtool.sandbox.isolation import looks_secret
from kbtool.sandbox.namespaces import SandboxPolicy

Request = TypeVar("Request")
Reply = TypeVar("Reply")
_POLL_S = 0.02
_WATCH_S = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK_NS = 10**9 // os.sysconf("SC_CLK_TCK")

# What a runner's environment keeps of the judge's: toolchains, devices, thread counts and
# caches need these; nothing else (provider keys, tokens, the user's settings) reaches it.
_KEPT_PREFIXES = ("LANG", "LC_", "TZ", "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "CUDA_",
                  "NVIDIA_", "TORCH_", "TORCHINDUCTOR_", "TRITON_", "PYTORCH_", "HF_HOME",
                  "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE")
_KEPT_NAMES = {"PATH", "LD_LIBRARY_PATH", "LIBRARY_PATH", "CPATH", "CC", "CXX", "CUDA_HOME",
               "CUDA_PATH", "ROCM_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", "TMPDIR", "HOME"}


def runner_environment(environ: dict[str, str], scratch: Path) -> dict[str, str]:
    """The environment a runner gets: an allow-list of ``environ`` (never a name that looks
    like a secret), with its home, temp and compiler caches in ``scratch``."""
    kept = {k: v for k, v in environ.items()
            if (k in _KEPT_NAMES or k.startswith(_KEPT_PREFIXES))
            and not looks_secret(k)}
    return {**kept, "HOME": str(scratch), "TMPDIR": str(scratch / "tmp"),
            "TORCH_EXTENSIONS_DIR": str(scratch / "torch_extensions"),
            "TRITON_CACHE_DIR": str(scratch / "triton_cache"),
            "TORCHINDUCTOR_CACHE_DIR": str(scratch / "inductor_cache")}


class Hello(BaseModel):
    """A runner's first message: the confinement that applied to it."""

    model_config = ConfigDict(extra="forbid", strict=True)
    op: Literal["hello"] = "hello"
    sandbox: list[str] = Field(max_length=16)


_HELLO = TypeAdapter(Hello)


class RunnerFailed(Exception):
    """The runner died, timed out or used too much memory; ``status`` says which."""

    def __init__(self, status: str, message: str, who: str) -> None:
        super().__init__(message)
        self.status = status  # "timeout", "memory" or "died"
        self.who = who        # the runner's name


@dataclass
class Runner(Generic[Request, Reply]):
    """The judge's handle on one runner."""

    name: str
    pid: int                       # the first process (a relay when it has a PID namespace)
    channel: Channel[Reply]
    scratch: Path
    memory_bytes: int
    group: cgroups.Group | str     # its cgroup, or why it has none
    sandbox: list[str] = field(default_factory=list)
    _pid_ns: str | None = None
    _status: int | None = None

    @property
    def counted(self) -> bool:
        """Whether a cgroup counts the CPU time and memory of everything the runner started
        (else they come from ``/proc``, for the processes the judge can see there)."""
        return isinstance(self.group, cgroups.Group) and self.group.counts("cpu") and \
            self.group.counts("memory")

    def _counts(self, role: str) -> cgroups.Group | None:
        return self.group if isinstance(self.group, cgroups.Group) and \
            self.group.counts(role) else None

    def started(self, deadline: float) -> None:
        """Wait for its hello (the confinement that applied); closed if it never comes."""
        try:
            while True:
                if time.monotonic() > deadline:
                    raise RunnerFailed("timeout", f"the {self.name} did not start in time",
                                       self.name)
                if self.channel.readable(_POLL_S):
                    break
                self._fail_if_dead()
            hello, _ = self.channel.receive(adapter=_HELLO)
        except ChannelClosed:
            self.close()
            raise RunnerFailed("died", f"the {self.name} could not start", self.name) from None
        except BaseException:
            self.close()
            raise
        if not isinstance(self.group, cgroups.Group):
            counted = f"not counted by a cgroup ({self.group}): CPU time and memory from /proc"
        elif not self.counted:
            counted = f"{self.group.describe()}; not counted by it: memory from /proc"
        else:
            counted = self.group.describe()
        self.sandbox = [*hello.sandbox, f"runner {counted}"]

    # -- what it says ----------------------------------------------------------------------
    def ask(self, request: BaseModel, deadline: float, fds: tuple[int, ...] = (),
            max_fds: int = 0) -> Reply:
        """Send ``request`` and wait for the reply until ``deadline`` (``time.monotonic``),
        watching the runner's memory and life meanwhile."""
        try:
            self.channel.send(request, fds)
        except OSError:
            self._fail_if_dead()
            raise RunnerFailed("died", f"the {self.name}'s process closed its channel", self.name) from None
        return self.wait(deadline, max_fds)

    def wait(self, deadline: float, max_fds: int = 0) -> Reply:
        watched = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise RunnerFailed("timeout", f"the {self.name} timed out", self.name)
            if self.channel.readable(min(_POLL_S, left)):
                try:
                    reply, _ = self.channel.receive(max_fds)
                except ChannelClosed:
                    self._fail_if_dead(wait=True)
                    raise RunnerFailed("died", f"the {self.name} closed its channel", self.name) from None
                return reply
            # Reading every process's memory costs CPU a busy runner may need: not too often.
            if time.monotonic() - watched > _WATCH_S:
                watched = time.monotonic()
                if self._over_memory():
                    self.kill()
                    raise self._memory_failed()
            self._fail_if_dead()

    def _over_memory(self) -> bool:
        """Past its memory limit: where its cgroup caps it, the kernel has had to kill one of
        its processes for it (the rest are the judge's to end); else its resident memory."""
        group = self._counts("memory")
        if group is not None:
            return group.oom_kills() > 0
        return self.rss_bytes() > self.memory_bytes

    def _memory_failed(self) -> RunnerFailed:
        return RunnerFailed("memory", f"the {self.name} exceeded the memory limit", self.name)

    def _fail_if_dead(self, wait: bool = False) -> None:
        if self._status is None:
            try:
                done, status = os.waitpid(self.pid, 0 if wait else os.WNOHANG)
            except ChildProcessError:
                return
            if not done:
                return
            self._status = status
        self.kill()
        if self._over_memory():
            raise self._memory_failed()
        raise RunnerFailed("died", f"the {self.name}'s process {self.describe_exit()}", self.name)

    def describe_exit(self) -> str:
        status = self._status
        if status is None:
            return "is still running"
        if os.WIFSIGNALED(status):
            return f"was killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
        return f"exited with code {os.WEXITSTATUS(status)}"

    # -- what it is --------------------------------------------------------------------------
    def processes(self) -> list[int]:
        """Every process the runner has now (pids as this process sees them); without a
        cgroup, [] where ``/proc`` cannot tell (a PID namespace of the judge's without a
        /proc of its own)."""
        if isinstance(self.group, cgroups.Group):
            return self.group.pids()
        if not namespaces.proc_is_own():
            return []
        if self._pid_ns is None:
            inner = _children(self.pid)
            # In its own PID namespace the runner's work happens in the relay's child.
            self._pid_ns = _pid_ns(inner[0]) if inner and _pid_ns(inner[0]) != _pid_ns(
                self.pid) else ""
        if self._pid_ns:
            return [self.pid, *(int(p) for p in os.listdir("/proc")
                                if p.isdigit() and _pid_ns(int(p)) == self._pid_ns)]
        found, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(_children(pid))
        return found

    def main_pid(self) -> int:
        """The process that serves the judge's requests (the relay's child where the runner
        has a PID namespace of its own), as this process can name it."""
        inner = _children(self.pid)
        if inner and _pid_ns(inner[0]) != _pid_ns(self.pid):
            return inner[0]
        return self.pid

    def _in_proc(self) -> list[int]:
        """Its processes where ``/proc`` shows them under the pids this process knows."""
        return self.processes() if namespaces.proc_is_own() else []

    def rss_bytes(self) -> int:
        """The memory charged to its cgroup (anonymous, file and shared pages, each once);
        without one, the resident memory of its largest process (forked processes share
        pages, so a sum would count them many times; their number is capped apart)."""
        group = self._counts("memory")
        if group is not None:
            return group.memory_bytes()
        largest = 0
        for pid in self._in_proc():
            with contextlib.suppress(OSError, ValueError, IndexError):
                largest = max(largest,
                              int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE)
        return largest

    def cpu_ns(self, exited: bool = True) -> int:
        """CPU time used so far by everything the runner started: from its cgroup, every
        process that was ever in it, to the microsecond.  Without a cgroup, from ``/proc``:
        its live threads to the nanosecond (``schedstat``); with ``exited``, also what the
        process-wide counters (``stat``, to the clock tick) hold beyond that: threads that
        have ended and children reaped (not processes reaped by nobody, nor ones out of the
        judge's sight).  Without ``exited`` the figure moves smoothly (a window's time)."""
        group = self._counts("cpu")
        if group is not None:
            return group.cpu_ns()
        total = 0
        for pid in self._in_proc():
            with contextlib.suppress(OSError, ValueError, IndexError):
                fine = 0
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        fine += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text()
                                    .split()[0])
                coarse = 0
                if exited:
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    coarse = sum(int(v) for v in fields[11:15]) * _TICK_NS
                total += max(fine, coarse)
        return total

    def kill(self, wait: bool = True) -> None:
        """End the runner and everything it started (its cgroup; else its session, its PID
        namespace, its descendants), and reap it (with ``wait``: a process with torch mapped
        takes a while to end, so a judge that ends several signals them all first)."""
        if isinstance(self.group, cgroups.Group):
            self.group.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # at once: its group may be forking
        for pid in self.processes():  # and whatever left the group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if wait and self._status is None:
            with contextlib.suppress(ChildProcessError):
                _, self._status = os.waitpid(self.pid, 0)

    def close(self) -> None:
        self.kill()
        self.channel.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if isinstance(self.group, cgroups.Group):
            # No wait for the kernel to end them: what is left goes with the evaluation's group.
            self.group.remove(wait_s=0.0)


def _children(pid: int) -> list[int]:
    found = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children")
                          .read_text().split()]
    return found


def _pid_ns(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return ""


def start_runner(name: str, serve: Callable[[Channel[Any]], None], scratch: Path,
                 policy: SandboxPolicy, requests: TypeAdapter[Any], replies: TypeAdapter[Any],
                 memory_bytes: int) -> Runner[Any, Any]:
    """Fork a runner that calls ``serve(channel)`` once confined; ``Runner.started`` waits
    for it to say hello (start several, then wait: they confine themselves in parallel).

    Call before this process has run a torch op.  ``requests`` validates what the runner
    receives, ``replies`` what the judge receives."""
    scratch.mkdir(parents=True, exist_ok=True)
    group = cgroups.runner_group(name, memory_bytes,
                                 policy.max_processes if policy.mode != "off" else None)
    judge_end, runner_end = socket_pair()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        judge_end.close()
        _runner_main(serve, Channel(runner_end, requests), scratch, policy, group)
    runner_end.close()
    return Runner(name, pid, Channel(judge_end, replies), scratch, memory_bytes, group)


def _runner_main(serve: Callable[[Channel[Any]], None], channel: Channel[Any], scratch: Path,
                 policy: SandboxPolicy, group: cgroups.Group | str) -> None:
    code = 1
    try:
        namespaces.die_with_parent()
        # First: everything it does from here on is counted, capped and ended with it.
        if isinstance(group, cgroups.Group):
            group.join()
        os.setsid()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        # Nothing of the judge's stays open: not its report pipe, not the other runner's end,
        # not a cgroup's directory.
        namespaces.close_fds([channel.fileno()])
        env = runner_environment(dict(os.environ), scratch)
        os.environ.clear()
        os.environ.update(env)
        for key in ("TMPDIR", "TORCH_EXTENSIONS_DIR", "TRITON_CACHE_DIR",
                    "TORCHINDUCTOR_CACHE_DIR"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        import tempfile

        tempfile.tempdir = None
        os.chdir(scratch)
        applied = namespaces.confine_runner(scratch, policy)
        channel.send(Hello(sandbox=applied))
        serve(channel)
        code = 0
    except BaseException:
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
