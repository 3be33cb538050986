"""The perf check inside containers: ``perf_engine=podman`` (podman-py, its REST socket) or
``perf_engine=apptainer`` (spython's command line); ``local`` (kbtool's sandbox) is the
default.  The engines are ``kbtool.sandbox.containers``, shared with the repo kind.

The judge stays where it is, in kbtool's isolated check process: it keeps the clock, the
seeds, the results and the verdict; only what runs the library moves into containers.
Every run (one version, one workload, one seed) gets a fresh container made from this
machine's files (no image): the system folders and kbtool's Python, the version's venv and
import root, the runner, the launcher and the workloads, all read-only; a private ``/tmp`` as
its home (its scratch), no network, no capabilities, no new privileges, a process and a
memory cap; removed afterwards.  The agent's run sees the agent's tree only, never the
human's.  The run talks to the judge as it does locally (``runner.py``'s two channels),
through FIFOs in a read-only bound folder, unlinked before the run starts; ``launcher.py``,
the container's first process, starts the run and reports its exit status, CPU time and
whatever it left running, so the timing rules and checks are the local ones.  The package's
own tests run in such a container too, in the agent's tree (read-only there).

A task that names a container image per arm (``image:``, for packages that need a build)
runs each arm's runs and tests in that image instead: the image's root and Python, its
built tree at ``image_tree``; bound in are only the runner, the launcher, the workloads,
the FIFOs and, for the agent (in the baseline's image), the files its patch changed, each
over its place in the image's tree.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import time
from pathlib import Path

from kbtool.sandbox import containers
from kbtool.sandbox.containers import Bind, Container, ContainerEngine, Spec, host_binds
from kbtool_plugins.perf.judge import (
    _EXIT_GRACE_S,
    RunFailed,
    Started,
    Usage,
    Version,
    Violation,
    _Lines,
)

SETTING = "perf_engine"
LAUNCHER = Path(__file__).with_name("launcher.py")
_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
_TAIL = 4000


class EngineFailed(Exception):
    """The container engine failed (not the candidate's fault)."""


def _venv_binds(python: Path) -> list[Path]:
    """The venv of ``python`` and the Python it was made from."""
    venv = python.parent.parent
    base = Path(os.path.realpath(python)).parent.parent
    return [venv, base] if base != venv else [venv]


def version_binds(version: Version, tree: Path, *extra: Path) -> list[Bind]:
    """What a container of ``version`` gets bound in, read-only: this machine's system
    folders, the version's venv and ``tree``; or, in an image (which has its own), only
    the overlay of changed files.  ``extra`` either way."""
    if version.image is None:
        return host_binds(*_venv_binds(version.python), tree, *extra)
    own = [(path, path, True) for path in dict.fromkeys(extra)]
    return [*own, *[(host, inside, True) for host, inside in version.overlay]]


class _ContainerRun:
    """One run in its own container, started by ``launcher.py``."""

    def __init__(self, engine: ContainerEngine, version: Version, launcher: Path,
                 runner: Path, workload: Path, home: Path, timeout_s: float,
                 memory_mb: int, max_processes: int) -> None:
        comm = home / "comm"
        comm.mkdir()
        self.fifos = [comm / name for name in ("ctl", "res", "status")]
        for fifo in self.fifos:
            os.mkfifo(fifo, 0o600)
        # The read ends first (they open at once): the launcher's write opens then do too.
        self.results = os.open(comm / "res", os.O_RDONLY | os.O_NONBLOCK)
        self.status = os.open(comm / "status", os.O_RDONLY | os.O_NONBLOCK)
        self.control = -1
        self.container: Container | None = None
        workdir = home / "container"
        workdir.mkdir()
        binds = [*version_binds(version, version.root, runner.parent, workload.parent,
                                launcher.parent), (comm, comm, True)]
        spec = Spec(argv=[str(version.python), "-I", "-B", "-S", str(launcher), str(comm),
                          str(version.python), str(runner), str(version.root), str(workload)],
                    env=dict(_ENV), binds=binds, cwd=Path("/tmp"), workdir=workdir,
                    timeout_s=timeout_s + _EXIT_GRACE_S, memory_mb=memory_mb,
                    max_processes=max_processes, image=version.image)
        called = time.monotonic()
        try:
            self.container = engine.start(spec)
        except Exception as exc:
            self._abort()
            raise EngineFailed(f"{engine.name}: {type(exc).__name__}: {exc}"[:2000]) from exc
        # The launcher is there when its open of the control FIFO meets the judge's.
        deadline = called + timeout_s
        while self.control < 0:
            try:
                self.control = os.open(comm / "ctl", os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    self._abort()
                    raise EngineFailed(f"{engine.name}: the run's control FIFO: {exc}") from exc
                code = self.container.wait(0.002)
                if code is not None or time.monotonic() > deadline:
                    output = self.output()
                    self._abort()
                    what = f"ended (exit {code})" if code is not None else \
                        f"did not start within {timeout_s:g} s"
                    raise EngineFailed(f"{engine.name}: the run's container {what}\n"
                                       f"--- output (tail) ---\n{output}") from None
        self.start = time.monotonic()
        os.set_blocking(self.control, True)
        os.set_blocking(self.results, True)
        for fifo in self.fifos:  # no process of the run can open them by name now
            fifo.unlink()
        os.write(self.control, b"start\n")

    def _status(self, deadline: float) -> tuple[int, Usage, list[str]] | None:
        """The launcher's report: the run's exit code, CPU time and what it left running;
        None if it did not come in time."""
        reader = _Lines(self.status)
        line = reader.line(deadline)
        if line is None:
            return None
        try:
            report = json.loads(line)
            code, cpu_ms, left = report["exit"], report["cpu_ms"], report["left"]
            at_go = report["cpu_at_go_ms"]
            valid = (set(report) == {"exit", "cpu_ms", "cpu_at_go_ms", "left"}
                     and type(code) is int and isinstance(cpu_ms, (int, float))
                     and (at_go is None or isinstance(at_go, (int, float)))
                     and isinstance(left, list) and not reader.pending())
        except (ValueError, TypeError, KeyError):
            valid = False
        if not valid:
            raise Violation(f"the launcher's report was tampered with: {line[:80]!r}")
        usage = Usage(float(cpu_ms), None if at_go is None else float(at_go))
        return code, usage, [str(x) for x in left]

    def cpu_now(self) -> float | None:
        return None  # the run's process is the container's: the launcher reads its clock

    def finish(self, who: str) -> Usage:
        report = self._status(time.monotonic() + _EXIT_GRACE_S)
        if report is None:
            raise Violation(f"the {who} run kept running {_EXIT_GRACE_S:g} s after sending "
                            "its result")
        code, usage, left = report
        if left:
            raise Violation(f"the {who} run started processes that outlived it "
                            f"({', '.join(left)})")
        if code != 0:
            raise RunFailed(f"the {who} run exited with code {code} after its result")
        return usage

    def failure(self) -> str:
        report = None
        with contextlib.suppress(Violation):
            report = self._status(time.monotonic() + 2.0)
        self.kill()
        if report is None:
            return "did not end"
        code = report[0]
        return f"exited with code {code}" if code >= 0 else \
            f"was killed by {signal.Signals(-code).name}"

    def kill(self) -> None:
        if self.container is not None:
            self.container.kill()

    def output(self) -> str:
        if self.container is None:
            return ""
        with contextlib.suppress(Exception):
            return self.container.output()[-_TAIL:].decode(errors="replace")
        return ""

    def _abort(self) -> None:
        """Not started after all: everything released, the results channel too."""
        os.close(self.results)
        self.close()

    def close(self) -> None:
        for fd in (self.status, self.control):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.status = self.control = -1
        if self.container is not None:
            container, self.container = self.container, None
            with contextlib.suppress(Exception):
                container.remove()


class ContainerLaunch:
    """The judge's runs, each in a fresh container of ``engine``."""

    def __init__(self, engine: ContainerEngine, bench: Path, memory_mb: int,
                 max_processes: int) -> None:
        self.engine = engine
        self.memory_mb, self.max_processes = memory_mb, max_processes
        self.launcher = bench / "launcher.py"  # beside the runner: hashed with it
        shutil.copyfile(LAUNCHER, self.launcher)

    def start(self, version: Version, runner: Path, workload: Path, home: Path,
              timeout_s: float) -> Started:
        return _ContainerRun(self.engine, version, self.launcher, runner, workload, home,
                             timeout_s, self.memory_mb, self.max_processes)


def run_tests(engine: ContainerEngine, argv: list[str], env: dict[str, str], tree: Path,
              version: Version, home: Path, timeout_s: float, memory_mb: int,
              max_processes: int) -> tuple[int | None, str]:
    """The package's tests (``argv``) in a container of ``version``, in ``tree`` (read-only
    there; in an image, the image's tree): the exit code (None: out of time) and the
    output."""
    workdir = home / "container"
    workdir.mkdir(parents=True)
    spec = Spec(argv=argv, env=env, binds=version_binds(version, tree), cwd=tree,
                workdir=workdir, timeout_s=timeout_s, memory_mb=memory_mb,
                max_processes=max_processes, image=version.image)
    output = home / "output.log"
    try:
        code = containers.run(engine, spec, output)
    except Exception as exc:
        raise EngineFailed(f"{engine.name}: {type(exc).__name__}: {exc}"[:2000]) from exc
    return code, output.read_bytes().decode(errors="replace")


def engine(name: str) -> ContainerEngine:
    """The container engine ``name``; one that cannot be made is :class:`EngineFailed`."""
    try:
        return containers.engine(name, SETTING)
    except Exception as exc:
        raise EngineFailed(f"{name}: {exc}") from exc


def unavailable(name: str) -> str | None:
    return containers.unavailable(name, SETTING)


def image_missing(name: str, image: str) -> str | None:
    return containers.image_missing(name, image, SETTING)
