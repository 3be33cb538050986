"""Throwaway containers made from this machine's own files, for the checks of task kinds:
Podman through podman-py (its REST socket), Apptainer (or Singularity) through spython's
command line.  The repo kind (``repo_engine``) and the perf kind (``perf_engine``) start
theirs here; the worker containers of ``kbtool worker start`` are another matter
(``kbtool.cluster.containers``).

A container has no image: its root is an empty folder in the caller's ``workdir``; the
host's system folders, the Python that runs kbtool and whatever the caller names are bound
into it (read-only unless the caller says otherwise); a private ``/tmp``, no network, no
capabilities, no new privileges, a process cap and a memory cap.  A caller may name an
image instead (``Spec.image``, one already on this machine: a Podman image, an Apptainer
SIF file or folder): its files are the root (read-only), and only the binds are added.  :func:`run` runs one
command to its end; :meth:`Podman.start` / :meth:`Apptainer.start` hand back a running
:class:`Container` for a caller that talks to it while it runs (through FIFOs in a bound
folder: they work across the container's boundary, even in a read-only bind).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kbtool.errors import RunError

# (host path, path inside, read-only)
Bind = tuple[Path, Path, bool]
# The host's system folders a Python needs (those that exist here are bound read-only).
SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
PODMAN_SOCKETS = ("/run/podman/podman.sock", "/var/run/podman/podman.sock")
ENGINES = ("podman", "apptainer")


@dataclass
class Spec:
    """One container: its command, environment, binds and limits."""

    argv: list[str]
    env: dict[str, str]
    binds: list[Bind]
    cwd: Path
    workdir: Path  # an empty host folder for the engine's own files (the root folder, a log)
    timeout_s: float  # how long the container may live (the client's own timeouts follow)
    memory_mb: int = 4096
    max_processes: int = 256
    image: str | None = None  # start from this image (None: an empty root and the binds)


class Container(Protocol):
    """A started container."""

    def wait(self, timeout_s: float | None) -> int | None:
        """Its exit code once it has ended; None while it still runs after ``timeout_s``."""
        ...

    def kill(self) -> None: ...

    def output(self) -> bytes:
        """What its processes wrote to stdout and stderr."""
        ...

    def remove(self) -> None:
        """Kill it if it still runs, and remove it (its ``workdir`` is the caller's)."""
        ...


class ContainerEngine(Protocol):
    name: str

    def start(self, spec: Spec) -> Container: ...


def python_folders() -> list[Path]:
    """The folders of the Python that runs kbtool (a venv and the Python it was made from)."""
    found = []
    for prefix in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(
            sys.executable))):
        path = Path(os.path.realpath(prefix))
        if not any(str(path).startswith(s + "/") or str(path) == s for s in SYSTEM):
            found.append(path)
    return found


def host_binds(*extra: Path) -> list[Bind]:
    """The system folders, kbtool's Python and ``extra``, each bound read-only where it is."""
    ro = [Path(p) for p in SYSTEM if Path(p).exists()]
    ro += [*python_folders(), *extra]
    return [(p, p, True) for p in dict.fromkeys(ro)]


def container_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "HOME": "/tmp", "TMPDIR": "/tmp"}


# -- Podman ---------------------------------------------------------------------------------
class _PodmanContainer:
    def __init__(self, client: Any, container: Any) -> None:
        self.client, self.container = client, container
        self._done = threading.Event()
        self._code: int | None = None
        threading.Thread(target=self._wait, daemon=True).start()

    def _wait(self) -> None:
        try:
            self._code = int(self.container.wait())
        except Exception:  # the container is gone: its code is unknown
            self._code = -1
        finally:
            self._done.set()

    def wait(self, timeout_s: float | None) -> int | None:
        return self._code if self._done.wait(timeout_s) else None

    def kill(self) -> None:
        with contextlib.suppress(Exception):  # it may have ended meanwhile
            self.container.kill()

    def output(self) -> bytes:
        logs = self.container.logs(stdout=True, stderr=True)
        return logs if isinstance(logs, bytes) else b"".join(logs)

    def remove(self) -> None:
        try:
            self.container.remove(force=True)
        finally:
            self.client.close()


class Podman:
    """Containers made through Podman's REST API (podman-py)."""

    name = "podman"

    def __init__(self, url: str | None = None, setting: str = "engine") -> None:
        self.url = url or podman_url(setting)

    def start(self, spec: Spec) -> Container:
        from podman import PodmanClient

        rootfs = spec.workdir / "rootfs"
        if spec.image is None:
            rootfs.mkdir()
        mounts: list[dict[str, Any]] = [
            {"type": "bind", "source": str(host), "target": str(inside), "read_only": ro}
            for host, inside, ro in spec.binds]
        mounts.append({"type": "tmpfs", "target": "/tmp", "size": "1g"})
        client = PodmanClient(base_url=self.url, timeout=spec.timeout_s + 60)
        try:
            root: dict[str, Any] = {} if spec.image else {"rootfs": str(rootfs)}
            container = client.containers.create(
                spec.image, spec.argv,  # type: ignore[arg-type]  # None: a root folder
                **root, mounts=mounts, environment=container_env(spec.env),
                working_dir=str(spec.cwd), network_mode="none", read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges"],
                pids_limit=spec.max_processes, mem_limit=f"{spec.memory_mb}m",
                log_config={"Type": "json-file"})
        except BaseException:
            client.close()
            raise
        try:
            container.start()
        except BaseException:
            with contextlib.suppress(Exception):
                container.remove(force=True)
            client.close()
            raise
        return _PodmanContainer(client, container)


# -- Apptainer ------------------------------------------------------------------------------
class _ApptainerContainer:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def wait(self, timeout_s: float | None) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def output(self) -> bytes:
        try:
            return self.log.read_bytes()
        except OSError:
            return b""

    def remove(self) -> None:
        self.kill()  # it, or whatever it left in its session
        self.proc.wait()
        # Apptainer's container init (its PID namespace's first process) outlives the
        # starter by a moment: to a caller that is a subreaper (the perf judge) it comes back
        # as an orphan of this process, which would read as one the run left.  Reap the
        # container's process group (ours: started in a new session).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-self.proc.pid, os.WNOHANG)
            except ChildProcessError:  # none left that is ours
                break
            if pid == 0:  # one still dying (killed above)
                time.sleep(0.005)


class Apptainer:
    """Containers run by Apptainer (or Singularity) through spython's command line."""

    name = "apptainer"

    def __init__(self, setting: str = "engine") -> None:
        self.setting = setting

    def start(self, spec: Spec) -> Container:
        from spython.main import Client

        binary = apptainer_binary()
        if binary is None:
            raise RunError(f"{self.setting}=apptainer: neither apptainer nor singularity is "
                           "on PATH")
        for host, inside, _ in spec.binds:  # spython would sys.exit() on a missing one
            if not host.exists():
                raise RunError(f"{self.setting}=apptainer: {host} (to bind at {inside}) is "
                               "not there")
            if any(c in f"{host}{inside}" for c in ":,"):
                raise RunError(f"{self.setting}=apptainer: cannot bind {host} at {inside} "
                               "(a ':' or ',' in the path)")
        rootfs, private = spec.workdir / "rootfs", spec.workdir / "apptainer"
        apptainer_mount_points(None if spec.image else rootfs, private, spec.binds)
        bind = [f"{host}:{inside}:{'ro' if ro else 'rw'}" for host, inside, ro in spec.binds]
        # --workdir: the private /tmp is a folder of ours (binds under /tmp need their mount
        # points made in it beforehand), also $HOME.  No /sys: where Apptainer cannot mount
        # a fresh one (in kbtool's check sandbox) it binds the host's, and the host's network
        # interfaces with it.  No --memory/--pids-limit: they need a cgroup tree to write,
        # which kbtool's check sandbox (where this runs) does not give; the container's
        # processes stay in that sandbox's pids cgroup and rlimits instead.
        options = ["--containall", "--no-privs", "--no-home", "--home", "/tmp", "--cleanenv",
                   "--writable-tmpfs", "--workdir", str(private),
                   "--pwd", str(spec.cwd), "--net", "--network", "none", "--no-mount", "sys",
                   *[f"--env={k}={v}" for k, v in container_env(spec.env).items()
                     if k != "HOME"]]  # --home sets it; Apptainer refuses it in --env
        # spython's own command line ("singularity exec ..."; its execute() has no time
        # limit), run with the binary this host has: Apptainer may have no "singularity".
        Client.quiet = True
        command = [*Client._init_command("exec"), *Client._generate_bind_list(bind), *options,
                   spec.image or str(rootfs), *spec.argv]
        command[0] = binary
        log = spec.workdir / "output.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        return _ApptainerContainer(proc, log)


# What Apptainer mounts into every container (--containall: its own /dev, /proc, /sys, /tmp
# and /var/tmp; the host's /etc/hosts, /etc/localtime, /etc/resolv.conf and an updated
# /etc/passwd and /etc/group): an image-less root needs a place for each, or the container is
# not made ("destination /dev doesn't exist in container") or warns.  A bound /etc then
# covers the files.
_APPTAINER_DIRS = ("dev", "proc", "sys", "tmp", "var/tmp")
_APPTAINER_FILES = ("etc/hosts", "etc/localtime", "etc/resolv.conf", "etc/passwd", "etc/group")


def apptainer_mount_points(rootfs: Path | None, private: Path, binds: list[Bind]) -> None:
    """The empty folders and files that Apptainer mounts on: its own mounts' in ``rootfs``,
    and every bind's (a folder for a folder, an empty file for a file), in ``rootfs`` or, for
    a bind under ``/tmp`` or ``/var/tmp``, in the private ``/tmp`` (``--workdir private``).
    An image (``rootfs`` None) has its own, and Apptainer makes a bind's elsewhere."""
    if rootfs is not None:
        for rel in _APPTAINER_DIRS:
            (rootfs / rel).mkdir(parents=True, exist_ok=True)
        for rel in _APPTAINER_FILES:
            (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
            (rootfs / rel).touch()
    for sub in ("tmp", "var_tmp"):
        (private / sub).mkdir(parents=True, exist_ok=True)
        (private / sub).chmod(0o1777)
    for host, inside, _ in binds:
        target = None if rootfs is None else rootfs / str(inside).lstrip("/")
        for under, there in ((Path("/tmp"), private / "tmp"),
                             (Path("/var/tmp"), private / "var_tmp")):
            if inside.is_relative_to(under):
                target = there / inside.relative_to(under)
        if target is None:
            continue
        if host.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()


# -- one command, and the engines by name ---------------------------------------------------
def run(engine: ContainerEngine, spec: Spec, output: Path) -> int | None:
    """``spec.argv`` in a container, to its end or ``spec.timeout_s`` (then killed: None);
    its output into ``output``; the container is removed."""
    container = engine.start(spec)
    try:
        code = container.wait(spec.timeout_s)
        if code is None:
            container.kill()
            container.wait(30)
        output.write_bytes(container.output())
    finally:
        container.remove()
    return code


def apptainer_binary() -> str | None:
    """The Apptainer (or Singularity) binary here, as spython finds one; None if neither."""
    from spython.utils import check_install

    for name in ("apptainer", "singularity"):
        if check_install(name):
            return name
    return None


def podman_url(setting: str = "engine") -> str:
    """Podman's REST socket: $CONTAINER_HOST, else the rootful default socket."""
    url = os.environ.get("CONTAINER_HOST")
    if url:
        return url
    for path in PODMAN_SOCKETS:
        if Path(path).exists():
            return f"unix://{path}"
    raise RunError(f"{setting}=podman: no Podman REST socket (start `podman system service "
                   "--time=0 unix:///path/podman.sock` and set "
                   "CONTAINER_HOST=unix:///path/podman.sock)")


def unavailable(name: str, setting: str = "engine") -> str | None:
    """Why the engine ``name`` cannot start containers here (one line), or None."""
    if name == "apptainer":
        return None if apptainer_binary() else \
            f"{setting}=apptainer: neither apptainer nor singularity is on PATH"
    if name == "podman":
        try:
            url = podman_url(setting)
        except RunError as exc:
            return str(exc)
        if url.startswith("unix://") and not Path(url[len("unix://"):]).exists():
            return f"{setting}=podman: the Podman REST socket {url} is not there"
        return None
    return f"unknown {setting} {name!r} (local, {' or '.join(ENGINES)})"


def image_missing(name: str, image: str, setting: str = "engine") -> str | None:
    """Why the engine ``name`` has no image ``image`` on this machine (one line), or None:
    containers are made offline, so an image is built, loaded or pulled beforehand."""
    if name == "podman":
        from podman import PodmanClient

        try:
            with PodmanClient(base_url=podman_url(setting)) as client:
                if client.images.exists(image):
                    return None
        except Exception as exc:
            return f"{setting}=podman: {type(exc).__name__}: {exc}".splitlines()[0]
        return f"{setting}=podman: no image {image} on this machine (build, load or pull it)"
    if name == "apptainer":
        if "://" in image or Path(image).exists():
            return None
        return f"{setting}=apptainer: no image {image} (a .sif file or an image folder)"
    return f"unknown {setting} {name!r} (local, {' or '.join(ENGINES)})"


def engine(name: str, setting: str = "engine") -> ContainerEngine:
    """The engine ``podman`` or ``apptainer``; another name is a ``RunError``."""
    if name == "podman":
        return Podman(setting=setting)
    if name == "apptainer":
        return Apptainer(setting)
    raise RunError(f"unknown {setting} {name!r} (local, {' or '.join(ENGINES)})")
