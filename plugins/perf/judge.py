"""The judge: runs one workload of one version in a fresh process and keeps the clock.

It runs in kbtool's isolated check process and never imports the library under test.  Per
run: a fresh interpreter (``runner.py``) with an empty home and temp folder that are
removed afterwards, a seed drawn after the library was imported, and the judge's own
monotonic clock from ``go`` to the arrival of the stored result.  After each run: the
process and everything it started must be gone, nothing may have changed in the patched
tree, the workloads or the runner; the run's CPU time is read by the judge (the process's
CPU clock, or ``launcher.py``'s readings in a container) at the start of the timed region
and at its end, and in all (``wait4``), so that work moved out of the timed region, or onto
other CPUs, shows.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from kbtool_plugins.perf.patching import changed_files, snapshot

RUNNER = Path(__file__).with_name("runner.py")
PR_SET_CHILD_SUBREAPER = 36
_EXIT_GRACE_S = 10.0
_FAILED_EXIT_S = 2.0  # a run that stopped answering may be exiting with its error
_OFF_CPU_S = 1.0  # a run still on the CPU after this is read as it is
_OUTPUT_TAIL = 4000


class Violation(Exception):
    """The candidate broke a rule of the benchmark: the verdict is ``rejected``."""


class RunFailed(Exception):
    """A workload process failed (raised, died, or ran out of time); ``line``: what
    happened, in one line (the step and the exception, without the output)."""

    def __init__(self, message: str, timed_out: bool = False, line: str = "") -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.line = line or message.splitlines()[0]


@dataclass(frozen=True)
class Version:
    name: str           # "baseline", "human" or "agent"
    python: Path        # the venv's interpreter (with an image: the image's)
    root: Path          # the folder put first on sys.path (the tree's import root)
    image: str | None = None    # the container image it runs in (None: this machine's files)
    # (host file, its place in the image): the agent's changed files over the image's tree
    overlay: tuple[tuple[Path, Path], ...] = ()


@dataclass(frozen=True)
class Run:
    experiment_ms: float   # the judge's clock: go -> the stored result received
    load_ms: float         # process start -> library imported
    setup_ms: float        # seed sent -> inputs ready
    cpu_ms: float          # CPU time of the process and the children it waited for
    lifetime_ms: float     # process start -> reaped
    untimed_cpu_ms: float  # CPU time before go (interpreter, import, setup)
    experiment_cpu_ms: float  # CPU time from go to the result (in a container: to the exit)
    result: Any

    @property
    def untimed_ms(self) -> float:
        """Wall time of the phases the score leaves out (interpreter, import, setup)."""
        return self.load_ms + self.setup_ms


@dataclass(frozen=True)
class Usage:
    """A finished run's CPU time (ms): in all, with the children it waited for; and at the
    moment ``go`` reached it, where only a launcher could read it (None: the judge did)."""

    cpu_ms: float
    at_go_ms: float | None = None


def cpu_clock_ms(pid: int) -> float | None:
    """The CPU time of process ``pid`` (all its threads) so far, read from outside it
    (its process CPU clock); None once it is gone."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e6  # CPUCLOCK_SCHED of a process
    except OSError:
        return None


def off_cpu(pid: int, timeout_s: float = _OFF_CPU_S) -> None:
    """Wait (at most ``timeout_s``) until the main thread of ``pid`` is off the CPU
    (blocked, stopped or gone).  The kernel brings a thread's CPU time up to date when it
    leaves the CPU; read from elsewhere while it runs, it lags by up to a scheduler tick."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return
        if stat[stat.rindex(b")") + 2:][:1] != b"R":
            return
        time.sleep(0.0002)


def load_workload(path: Path) -> ModuleType:
    """A workload module, for its ``check_equivalence`` (its top level imports only the
    standard library; the library under test is imported by ``load()``, never here)."""
    spec = importlib.util.spec_from_file_location(f"kbtool_perf_check_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def become_subreaper() -> None:
    """Orphans of the runs become this process's children, so none goes unnoticed (in
    kbtool's PID namespace this process is init and already is)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


class Started(Protocol):
    """A run's process, started (here, or in a container: ``containers``)."""

    start: float     # the judge's clock when the process was there
    control: int     # the write end of the control channel
    results: int     # the read end of the results channel

    def cpu_now(self) -> float | None:
        """Its CPU time so far (ms), where the judge can read it (None: in a container)."""
        ...

    def finish(self, who: str) -> Usage:
        """After its result: the process must end (within a grace period, exit code 0,
        nothing left running); its CPU time."""
        ...

    def failure(self) -> str:
        """It stopped answering: end it; how it ended ("exited with code 1")."""
        ...

    def kill(self) -> None: ...

    def output(self) -> str:
        """The tail of what it wrote to stdout and stderr."""
        ...

    def close(self) -> None:
        """Release what is left of it (after ``finish`` or ``kill``)."""
        ...


class Launch(Protocol):
    """Starts a run's process: a child of the judge here (:class:`LocalLaunch`), or in a
    container (``containers.ContainerLaunch``)."""

    def start(self, version: Version, runner: Path, workload: Path, home: Path,
              timeout_s: float) -> Started: ...


class _LocalRun:
    """A run as a child process of the judge, in its own session."""

    def __init__(self, version: Version, runner: Path, workload: Path, home: Path) -> None:
        ctl_r, ctl_w = os.pipe()
        res_r, res_w = os.pipe()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home),
               "LANG": "C.UTF-8"}
        self.home = home
        log = (home / "output.log").open("wb")
        self.start = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                [str(version.python), "-I", "-B", str(runner), str(ctl_r), str(res_w),
                 str(version.root), str(workload)],
                pass_fds=(ctl_r, res_w), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=home, env=env, start_new_session=True)
        except OSError:
            os.close(ctl_w)
            os.close(res_r)
            raise
        finally:
            os.close(ctl_r)
            os.close(res_w)
            log.close()
        self.control, self.results = ctl_w, res_r

    def cpu_now(self) -> float | None:
        off_cpu(self.proc.pid)
        return cpu_clock_ms(self.proc.pid)

    def finish(self, who: str) -> Usage:
        """Reap the run's process; its CPU time (with the children it waited for) in ms."""
        proc = self.proc
        deadline = time.monotonic() + _EXIT_GRACE_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                raise Violation(f"the {who} run kept running {_EXIT_GRACE_S:g} s after "
                                "sending its result")
            time.sleep(0.002)
        if proc.returncode != 0:
            raise RunFailed(f"the {who} run exited with code {proc.returncode} after its "
                            "result")
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, 0)  # anything left in its process group?
            os.killpg(proc.pid, signal.SIGKILL)
            raise Violation(f"the {who} run left a process running")
        return Usage((usage.ru_utime + usage.ru_stime) * 1e3)

    def failure(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(_FAILED_EXIT_S)  # its own exit code, if it is ending anyway
        _kill(self.proc)
        self.proc.wait()
        code = self.proc.returncode
        return f"exited with code {code}" if code >= 0 else \
            f"was killed by {signal.Signals(-code).name}"

    def kill(self) -> None:
        _kill(self.proc)

    def output(self) -> str:
        return _tail(self.home / "output.log")

    def close(self) -> None:
        pass


class LocalLaunch:
    """Runs as children of the judge, in the judge's sandbox."""

    def start(self, version: Version, runner: Path, workload: Path, home: Path,
              timeout_s: float) -> Started:
        return _LocalRun(version, runner, workload, home)


class Judge:
    """Runs workloads in fresh processes under the rules above."""

    def __init__(self, scratch: Path, protected: list[Path], run_timeout_s: float,
                 launch: Launch | None = None) -> None:
        self.scratch = scratch
        self.runs_dir = scratch / "runs"
        self.runs_dir.mkdir(exist_ok=True)
        self.runner = scratch / "bench" / "runner.py"
        self.runner.parent.mkdir(exist_ok=True)
        shutil.copyfile(RUNNER, self.runner)
        self.protected = [*protected, self.runner.parent]
        self.timeout_s = run_timeout_s
        self.launch: Launch = launch or LocalLaunch()
        self.count = 0
        self._snapshots: dict[Path, dict[str, str]] = {}
        self._entries: set[str] = set()
        become_subreaper()

    def seal(self) -> None:
        """Record the protected files and the scratch folder as they must stay."""
        self._snapshots = {p: snapshot(p) for p in self.protected}
        self._entries = set(os.listdir(self.scratch))

    def verify(self, who: str) -> None:
        """Nothing protected changed and nothing new lies in the scratch folder."""
        for path, before in self._snapshots.items():
            changed = changed_files(before, snapshot(path))
            if changed:
                raise Violation(f"{who} changed files the benchmark relies on "
                                f"({', '.join(changed[:5])} in {path.name}/)")
        extra = sorted(set(os.listdir(self.scratch)) - self._entries)
        if extra:
            raise Violation(f"{who} left files behind ({', '.join(extra[:5])})")

    def run(self, version: Version, workload: Path, seed: int,
            params: dict[str, Any] | None = None) -> Run:
        """One run of ``workload`` (its module-level names ``params`` replaced) on
        ``version`` with ``seed``."""
        self.count += 1
        home = self.runs_dir / str(self.count)
        home.mkdir()
        try:
            return self._run(version, workload, seed, params or {}, home)
        finally:
            shutil.rmtree(home, ignore_errors=True)
            self._reap(version.name)
            self.verify(f"the {version.name} run of {workload.stem}")

    def _run(self, version: Version, workload: Path, seed: int, params: dict[str, Any],
             home: Path) -> Run:
        proc = self.launch.start(version, self.runner, workload, home, self.timeout_s)
        try:
            start = proc.start
            deadline = start + self.timeout_s
            reader = _Lines(proc.results)
            control = os.fdopen(proc.control, "w")
            try:
                self._expect(reader, "loaded", deadline, proc)
                loaded = time.monotonic()
                _send(control, json.dumps({"seed": seed, "params": params}) + "\n")
                self._expect(reader, "ready", deadline, proc)
                ready = time.monotonic()
                cpu_go = proc.cpu_now()
                go = time.monotonic()
                _send(control, "go\n")
                message = self._expect(reader, "result", deadline, proc)
                done = time.monotonic()
                cpu_done = proc.cpu_now()
                control.close()  # the run exits now
                usage = proc.finish(version.name)
                exited = time.monotonic()
                if reader.pending():
                    raise Violation(f"the {version.name} run wrote more than its result to "
                                    "the judge's pipe")
            except BaseException:
                proc.kill()
                raise
            finally:
                with contextlib.suppress(OSError):
                    control.close()
                os.close(proc.results)
        finally:
            proc.close()
        if cpu_go is None or cpu_done is None:  # in a container: the launcher's readings
            cpu_go = usage.at_go_ms if usage.at_go_ms is not None else 0.0
            cpu_done = usage.cpu_ms
        return Run(experiment_ms=(done - go) * 1e3, load_ms=(loaded - start) * 1e3,
                   setup_ms=(ready - loaded) * 1e3, cpu_ms=usage.cpu_ms,
                   lifetime_ms=(exited - start) * 1e3, untimed_cpu_ms=cpu_go,
                   experiment_cpu_ms=max(0.0, cpu_done - cpu_go), result=message["result"])

    def _expect(self, reader: _Lines, key: str, deadline: float,
                proc: Started) -> dict[str, Any]:
        stage = {"loaded": "load", "ready": "setup", "result": "experiment"}[key]
        line = reader.line(deadline)
        if line is None:
            timed_out = time.monotonic() >= deadline
            how = proc.failure()
            if timed_out:
                how = f"ran longer than {self.timeout_s:g} s"
            raise RunFailed(f"the workload process {how} during {stage}\n"
                            f"--- output (tail) ---\n{proc.output()}", timed_out,
                            line=f"the process {how} during {stage}")
        try:
            message = json.loads(line)
        except ValueError:
            raise Violation(f"something wrote {line[:80]!r} into the judge's pipe during "
                            f"{stage}") from None
        error = message.get("error") if isinstance(message, dict) else None
        if isinstance(error, dict) and set(message) == {"error"}:
            step = str(error.get("stage", stage))[:40]
            what = f"{step}: {str(error.get('message', '?'))[:1000]}"
            proc.failure()
            raise RunFailed(f"the workload process failed: {what}\n--- output (tail) ---\n"
                            f"{proc.output()}", line=what)
        if not isinstance(message, dict) or set(message) != {key}:
            raise Violation(f"unexpected message on the judge's pipe during {stage}: "
                            f"{str(message)[:80]!r}")
        return message

    def _reap(self, who: str) -> None:
        """Orphans handed to this process: a run started a process that outlived it."""
        found = []
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                found.append("one still running")
                break
            found.append(str(pid))
        if found:
            raise Violation(f"the {who} run started processes that outlived it ({', '.join(found)})")


class _Lines:
    """Whole lines from a pipe, waiting at most until a deadline."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""

    def line(self, deadline: float) -> str | None:
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode(errors="replace")

    def pending(self) -> bool:
        os.set_blocking(self.fd, False)
        with contextlib.suppress(BlockingIOError, OSError):
            self.buffer += os.read(self.fd, 1 << 16)
        return bool(self.buffer.strip())


def _send(control: Any, text: str) -> None:
    try:
        control.write(text)
        control.flush()
    except (BrokenPipeError, OSError):
        pass  # the process died: the next read says how


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        if proc.poll() is None:
            proc.wait(5)


def _tail(path: Path) -> str:
    try:
        return path.read_bytes()[-_OUTPUT_TAIL:].decode(errors="replace")
    except OSError:
        return ""
