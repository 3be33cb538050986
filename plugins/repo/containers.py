"""The same check inside a container: Podman through podman-py (its REST socket), Apptainer
through spython.  ``repo_engine=podman|apptainer`` picks one; ``local`` (kbtool's sandbox)
is the default.

The container is made from nothing but this machine's own files, read-only: an empty root
folder in the scratch with the system folders, the Python that runs kbtool and the harness
bound into it, the pristine tree bound where the workspace would be, the edited file bound
over its original, and the judge's folder (the signed records) the only writable place
besides a private ``/tmp``.  No network, no capabilities, no new privileges, a process cap;
the whole container is removed afterwards.  Its workspace is read-only: a test or a
candidate that writes a repository file fails there instead of being seen writing it.
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any

from kbtool.errors import RunError
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.runner import HARNESS, Engine, RunLimits, RunRequest, RunResult, Workspace, judge

# The host's system folders a Python needs (those that exist here are bound read-only).
SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
PODMAN_SOCKETS = ("/run/podman/podman.sock", "/var/run/podman/podman.sock")


class BoundWorkspace(Workspace):
    """The pristine tree and the edited file, bound read-only inside the container."""

    def __init__(self, repo: Repository, scratch: Path, rel: str, text: str) -> None:
        self.repo, self.rel, self.text = repo, rel, text
        self.root = scratch / "ws"
        self.kind = "read-only container"
        self.root.mkdir()
        self.edited = scratch / "edited" / Path(rel).name
        self.edited.parent.mkdir()
        self.edited.write_text(text)

    def changes(self) -> list[str]:
        return []  # nothing in it is writable

    def close(self) -> None:
        pass

    def binds(self) -> list[tuple[Path, Path, bool]]:
        return [(self.repo.src, self.root, True), (self.edited, self.root / self.rel, True)]


def _python_folders() -> list[Path]:
    """The folders of the Python that runs kbtool (a venv and the Python it was made from)."""
    found = []
    for prefix in (sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(
            sys.executable))):
        path = Path(os.path.realpath(prefix))
        if not any(str(path).startswith(s + "/") or str(path) == s for s in SYSTEM):
            found.append(path)
    return found


def binds(repo: Repository, workspace: BoundWorkspace,
          judge_dir: Path) -> list[tuple[Path, Path, bool]]:
    """(host path, container path, read-only) of everything the harness needs."""
    ro = [Path(p) for p in SYSTEM if Path(p).exists()]
    ro += [*_python_folders(), HARNESS.parent, repo.deps]
    found = [(p, p, True) for p in dict.fromkeys(ro)]
    found += workspace.binds()
    found.append((judge_dir, judge_dir, False))
    return found


def _container_env(env: dict[str, str]) -> dict[str, str]:
    return {**env, "HOME": "/tmp", "TMPDIR": "/tmp"}


class Podman:
    """A container made through Podman's REST API (podman-py)."""

    name = "podman"

    def __init__(self, url: str | None = None) -> None:
        self.url = url or podman_url()

    def workspace(self, repo: Repository, scratch: Path, rel: str, text: str) -> Workspace:
        return BoundWorkspace(repo, scratch, rel, text)

    def run(self, argv: list[str], env: dict[str, str], workspace: Workspace, judge_dir: Path,
            output: Path, limits: RunLimits) -> bool:
        from podman import PodmanClient

        assert isinstance(workspace, BoundWorkspace)
        rootfs = judge_dir.parent / "rootfs"
        rootfs.mkdir()
        mounts: list[dict[str, Any]] = [
            {"type": "bind", "source": str(host), "target": str(inside), "read_only": ro}
            for host, inside, ro in binds(workspace.repo, workspace, judge_dir)]
        mounts.append({"type": "tmpfs", "target": "/tmp", "size": "1g"})
        with PodmanClient(base_url=self.url, timeout=limits.timeout_s + 60) as client:
            container = client.containers.create(
                None, argv,  # type: ignore[arg-type]  # no image: a root folder
                rootfs=str(rootfs), mounts=mounts, environment=_container_env(env),
                working_dir=str(workspace.root), network_mode="none", read_only=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges"], pids_limit=256,
                mem_limit=f"{limits.memory_mb}m", log_config={"Type": "json-file"})
            try:
                container.start()
                done = threading.Event()

                def wait() -> None:
                    container.wait()
                    done.set()

                waiter = threading.Thread(target=wait, daemon=True)
                waiter.start()
                timed_out = not done.wait(limits.timeout_s)
                if timed_out:
                    container.kill()
                    waiter.join(30)
                logs = container.logs(stdout=True, stderr=True)
                output.write_bytes(b"".join(logs if not isinstance(logs, bytes) else [logs]))
            finally:
                container.remove(force=True)
        return timed_out


class Apptainer:
    """A container run by Apptainer (or Singularity) through spython."""

    name = "apptainer"

    def workspace(self, repo: Repository, scratch: Path, rel: str, text: str) -> Workspace:
        return BoundWorkspace(repo, scratch, rel, text)

    def run(self, argv: list[str], env: dict[str, str], workspace: Workspace, judge_dir: Path,
            output: Path, limits: RunLimits) -> bool:
        import subprocess

        from spython.main import Client

        assert isinstance(workspace, BoundWorkspace)
        binary = apptainer_binary()
        if binary is None:
            raise RunError("repo_engine=apptainer: neither apptainer nor singularity is on PATH")
        rootfs = judge_dir.parent / "rootfs"
        for host, inside, _ in binds(workspace.repo, workspace, judge_dir):
            target = rootfs / str(inside).lstrip("/")
            if host.is_dir():
                target.mkdir(parents=True, exist_ok=True)
        (rootfs / "tmp").mkdir(exist_ok=True)
        bind = [f"{host}:{inside}:{'ro' if ro else 'rw'}"
                for host, inside, ro in binds(workspace.repo, workspace, judge_dir)]
        options = ["--containall", "--no-privs", "--no-home", "--cleanenv", "--writable-tmpfs",
                   "--pwd", str(workspace.root), "--net", "--network", "none",
                   *[f"--env={k}={v}" for k, v in _container_env(env).items()]]
        # spython's own command line ("singularity exec ..."; its execute() has no time
        # limit), run with the binary this host has: Apptainer may have no "singularity".
        Client.quiet = True
        command = [*Client._init_command("exec"), *Client._generate_bind_list(bind), *options,
                   str(rootfs), *argv]
        command[0] = binary
        with output.open("wb") as out:
            try:
                subprocess.run(command, stdout=out, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                return True
        return False


def apptainer_binary() -> str | None:
    """The Apptainer (or Singularity) binary here, as spython finds one; None if neither."""
    from spython.utils import check_install

    for name in ("apptainer", "singularity"):
        if check_install(name):
            return name
    return None


def podman_url() -> str:
    """Podman's REST socket: $CONTAINER_HOST, else the rootful default socket."""
    url = os.environ.get("CONTAINER_HOST")
    if url:
        return url
    for path in PODMAN_SOCKETS:
        if Path(path).exists():
            return f"unix://{path}"
    raise RunError("repo_engine=podman: no Podman REST socket (start `podman system service` "
                   "and set CONTAINER_HOST=unix:///path/to/podman.sock)")


def engine(name: str) -> Engine:
    if name == "podman":
        return Podman()
    if name == "apptainer":
        return Apptainer()
    raise RunError(f"unknown repo_engine {name!r} (local, podman or apptainer)")


def judge_in_container(name: str, repo: Repository, request: RunRequest, limits: RunLimits,
                       scratch: Path) -> RunResult:
    """``runner.judge`` with the harness in a container; a container that could not be
    made is an ``infrastructure`` result."""
    try:
        return judge(repo, request, limits, scratch, engine(name))
    except Exception as exc:  # the container engine's failure, not the candidate's
        shutil.rmtree(scratch / "rootfs", ignore_errors=True)
        return RunResult(status="infrastructure", total=len(request.tests),
                         infrastructure_error=f"{name}: {type(exc).__name__}: {exc}"[:2000])
