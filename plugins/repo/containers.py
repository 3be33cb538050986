"""The same check inside a container: Podman through podman-py (its REST socket), Apptainer
through spython.  ``repo_engine=podman|apptainer`` picks one; ``local`` (kbtool's sandbox)
is the default.  The engines themselves are ``kbtool.sandbox.containers`` (shared with the
perf kind); this module says what the harness's container holds.

The container is made from nothing but this machine's own files, read-only: an empty root
folder in the scratch with the system folders, the Python that runs kbtool and the harness
bound into it, the pristine tree bound where the workspace would be, the edited file bound
over its original, and the judge's folder (the signed records) the only writable place
besides a private ``/tmp``.  No network, no capabilities, no new privileges, a process cap;
the whole container is removed afterwards.  Its workspace is read-only: a test or a
candidate that writes a repository file fails there instead of being seen writing it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from kbtool.sandbox import containers
from kbtool.sandbox.containers import Bind, ContainerEngine, Spec, host_binds
from kbtool.sandbox.containers import apptainer_binary as apptainer_binary
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.runner import HARNESS, Engine, RunLimits, RunRequest, RunResult, Workspace, judge

SETTING = "repo_engine"


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

    def binds(self) -> list[Bind]:
        return [(self.repo.src, self.root, True), (self.edited, self.root / self.rel, True)]


def binds(repo: Repository, workspace: BoundWorkspace, judge_dir: Path) -> list[Bind]:
    """(host path, container path, read-only) of everything the harness needs."""
    return [*host_binds(HARNESS.parent, repo.deps), *workspace.binds(),
            (judge_dir, judge_dir, False)]


class _Contained:
    """A ``runner.Engine`` whose harness runs in a container of ``engine``."""

    name = ""

    def __init__(self, engine: ContainerEngine) -> None:
        self.engine = engine

    def workspace(self, repo: Repository, scratch: Path, rel: str, text: str) -> Workspace:
        return BoundWorkspace(repo, scratch, rel, text)

    def run(self, argv: list[str], env: dict[str, str], workspace: Workspace, judge_dir: Path,
            output: Path, limits: RunLimits) -> bool:
        assert isinstance(workspace, BoundWorkspace)
        workdir = judge_dir.parent / "container"
        workdir.mkdir()
        spec = Spec(argv=argv, env=env, binds=binds(workspace.repo, workspace, judge_dir),
                    cwd=workspace.root, workdir=workdir, timeout_s=limits.timeout_s,
                    memory_mb=limits.memory_mb)
        return containers.run(self.engine, spec, output) is None


class Podman(_Contained):
    """The harness in a container made through Podman's REST API (podman-py)."""

    name = "podman"

    def __init__(self, url: str | None = None) -> None:
        super().__init__(containers.Podman(url, SETTING))


class Apptainer(_Contained):
    """The harness in a container run by Apptainer (or Singularity) through spython."""

    name = "apptainer"

    def __init__(self) -> None:
        super().__init__(containers.Apptainer(SETTING))


def podman_url() -> str:
    """Podman's REST socket (``kbtool.sandbox.containers.podman_url``)."""
    return containers.podman_url(SETTING)


def engine(name: str) -> Engine:
    if name == "podman":
        return Podman()
    if name == "apptainer":
        return Apptainer()
    containers.engine(name, SETTING)  # raises: an unknown engine
    raise AssertionError(name)


def judge_in_container(name: str, repo: Repository, request: RunRequest, limits: RunLimits,
                       scratch: Path) -> RunResult:
    """``runner.judge`` with the harness in a container; a container that could not be
    made is an ``infrastructure`` result."""
    try:
        return judge(repo, request, limits, scratch, engine(name))
    except Exception as exc:  # the container engine's failure, not the candidate's
        shutil.rmtree(scratch / "container", ignore_errors=True)
        return RunResult(status="infrastructure", total=len(request.tests),
                         infrastructure_error=f"{name}: {type(exc).__name__}: {exc}"[:2000])
