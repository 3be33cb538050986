"""Containerized workers: the engine base class, the flags every engine shares, image builds.

An engine turns a ``WorkerSpec`` into the one command line that starts ``kbtool worker serve``
inside a container (``command``) and names the command that builds the worker image
(``build_command``).  The engines themselves (local, docker, podman, podman-hpc, apptainer,
singularity) are small classes in ``plugins/engines.py``, registered through the
``register_container_engines`` hook; third-party plugins may add or replace engines.

Every engine applies the same policy, spelled in its own flags: no network, a read-only root
filesystem, all capabilities dropped, no new privileges, a private writable scratch (tmpfs
unless ``--scratch DIR``), the queue directories and the kbtool cache bound read-write at
fixed paths (``/kbtool-worker/in``, ``.../out``, ``.../cache``), and GPU access with
``TORCH_CUDA_ARCH_LIST`` set from the architecture.  Root inside a container keeps one
capability, SETFCAP, where the engine lets kbtool's own sandbox of candidate code work
inside the container (see ``candidate_sandbox_needs_setfcap``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from kbtool import __version__
from kbtool.errors import UsageError

if TYPE_CHECKING:
    from kbtool.config import Config

# GPU generations -> TORCH_CUDA_ARCH_LIST (what nvcc / load_inline compile for).
# "cpu" starts a worker without GPU flags (CPU tasks, and tests on machines without a GPU).
ARCHES: dict[str, str | None] = {"ampere": "8.0", "hopper": "9.0", "cpu": None}

# ``--image rootfs:PATH``: a directory is the container's root filesystem instead of an image
# (Podman's ``--rootfs``, read-only through an overlay).  For testing and air-gapped hosts:
# ``rootfs:/`` runs the host's own Python, torch and kbtool inside the container.
ROOTFS_PREFIX = "rootfs:"
# Where the host's directories appear inside a container: fixed paths, so a bind never lands
# under the container's private /tmp or $HOME (Apptainer's --containall replaces both).  Not
# "/kbtool/...": a /kbtool folder would shadow the package for `python -m kbtool` run in /.
INSIDE_INPUT = Path("/kbtool-worker/in")
INSIDE_OUTPUT = Path("/kbtool-worker/out")
INSIDE_CACHE = Path("/kbtool-worker/cache")
INSIDE_CONFIG = Path("/kbtool-worker/config.yaml")
IMAGE_NAME = "kbtool-worker"


def cuda_arch_list(arch: str) -> str | None:
    """``Ampere`` -> ``8.0``; unknown names raise a one-line error."""
    key = arch.strip().lower()
    if key not in ARCHES:
        raise UsageError(f"unknown GPU architecture {arch!r} (known: Ampere, Hopper, cpu)")
    return ARCHES[key]


@dataclass
class WorkerSpec:
    """What a containerized worker needs; the paths are the host's, absolute."""

    input_dir: Path
    output_dir: Path
    cache_dir: Path
    arch: str = "cpu"
    image: str | None = None            # None: the engine's default image
    settings: list[str] = field(default_factory=list)   # key=value for `worker serve`
    serve_options: list[str] = field(default_factory=list)  # --max-jobs 3, --config-profile q
    config_file: Path | None = None     # a --config file, bound read-only
    name: str | None = None             # container name (docker, podman)
    detach: bool = False
    scratch: Path | None = None         # disk-backed scratch instead of a tmpfs
    share_network: bool = False         # only where a site forbids network namespaces
    gpu_index: str | None = None        # CUDA_VISIBLE_DEVICES: one worker per GPU
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    python: str = sys.executable        # the interpreter for `local` and rootfs: images

    @property
    def arch_list(self) -> str | None:
        return cuda_arch_list(self.arch)

    @property
    def gpu(self) -> bool:
        return self.arch_list is not None

    def gpu_env(self) -> list[str]:
        """NAME=VALUE for the worker's environment on a GPU."""
        if not self.gpu:
            return []
        env = [f"TORCH_CUDA_ARCH_LIST={self.arch_list}"]
        if self.gpu_index is not None:
            env.append(f"CUDA_VISIBLE_DEVICES={self.gpu_index}")
        return env

    @property
    def rootfs(self) -> str | None:
        if self.image and self.image.startswith(ROOTFS_PREFIX):
            return self.image[len(ROOTFS_PREFIX):] or "/"
        return None

    def serve_args(self, inside: bool = True) -> list[str]:
        """``worker serve`` and its settings, with the paths a container sees (``inside``)
        or the host's."""
        paths: tuple[Path, Path, Path, Path | None]
        if inside:
            paths = (INSIDE_INPUT, INSIDE_OUTPUT, INSIDE_CACHE, INSIDE_CONFIG)
        else:
            paths = (self.input_dir, self.output_dir, self.cache_dir, self.config_file)
        config = ["--config", str(paths[3])] if self.config_file is not None else []
        return ["worker", "serve", f"worker_input_dir={paths[0]}",
                f"worker_output_dir={paths[1]}", f"cache_dir={paths[2]}",
                *self.settings, *self.serve_options, *config]

    def binds(self) -> list[tuple[Path, Path, str]]:
        """(host path, container path, "rw" or "ro") for every bind."""
        out = [(self.input_dir, INSIDE_INPUT, "rw"), (self.output_dir, INSIDE_OUTPUT, "rw"),
               (self.cache_dir, INSIDE_CACHE, "rw")]
        if self.config_file is not None:
            out.append((self.config_file, INSIDE_CONFIG, "ro"))
        return out

    def code_under_tmp(self) -> list[Path]:
        """With a ``rootfs:`` image: this Python's environment and kbtool's source where they
        lie under /tmp, which the container's own /tmp hides (bound read-only, same path)."""
        if self.rootfs is None:
            return []
        import kbtool

        found: list[Path] = []
        for path in (Path(sys.prefix), Path(sys.base_prefix),
                     Path(os.path.realpath(self.python)).parent.parent,
                     Path(kbtool.__file__).resolve().parent.parent):
            path = Path(os.path.abspath(path))
            if path.is_relative_to("/tmp") and path != Path("/tmp") and path not in found:
                found.append(path)
        return found


class ContainerEngine:
    """One container platform.  Subclasses set the class attributes and ``command``."""

    name: ClassVar[str] = ""
    binary: ClassVar[str] = ""
    description: ClassVar[str] = ""
    definition: ClassVar[str | None] = "Dockerfile"  # under containers/; None: no image
    can_detach: ClassVar[bool] = False
    takes_rootfs: ClassVar[bool] = False

    def available(self) -> str | None:
        """None when usable here, else why not (the binary is missing)."""
        if self.binary and shutil.which(self.binary) is None:
            return f"{self.binary!r} is not on PATH"
        return None

    def default_image(self) -> str:
        return f"{IMAGE_NAME}:{__version__}"

    def check(self, spec: WorkerSpec) -> None:
        spec.arch_list  # noqa: B018 - validates the architecture
        if spec.rootfs is not None and not self.takes_rootfs:
            raise UsageError(f"engine {self.name!r} does not take {ROOTFS_PREFIX} images "
                              "(podman and apptainer do)")
        if spec.detach and not self.can_detach:
            raise UsageError(f"engine {self.name!r} cannot --detach; run it in the "
                              "background, under nohup or from a batch job")

    def candidate_sandbox_needs_setfcap(self, spec: WorkerSpec) -> bool:
        """Whether to keep CAP_SETFCAP.  Root inside a container may map itself into the
        candidate's user namespace only with it (Linux >= 5.12); without it kbtool's own
        sandbox of candidate code (no network, read-only files, PID namespace) cannot be set
        up inside the container.  False where the engine's seccomp profile forbids unshare
        anyway (Docker's default) or the worker is not root inside."""
        return False

    def inner_command(self, spec: WorkerSpec) -> list[str]:
        """``kbtool worker serve ...`` as run inside the container."""
        if spec.rootfs is not None:
            return [spec.python, "-m", "kbtool", *spec.serve_args()]
        return ["kbtool", *spec.serve_args()]

    def command(self, spec: WorkerSpec) -> list[str]:
        """The full argv that starts a worker."""
        raise NotImplementedError

    def build_command(self, definition: Path, tag: str, context: Path,
                      build_args: list[str] | None = None) -> list[str]:
        raise UsageError(f"engine {self.name!r} builds no image")

    def build_commands(self, definition: Path, tag: str, context: Path,
                       build_args: list[str] | None = None) -> list[list[str]]:
        """Every command an image build needs, in order (podman-hpc adds a migrate)."""
        return [self.build_command(definition, tag, context, build_args)]


class OciEngine(ContainerEngine):
    """Docker-style ``run`` flags shared by docker, podman and podman-hpc."""

    can_detach = True
    gpu_flags: ClassVar[tuple[str, ...]] = ("--gpus", "all")
    # The whole container's processes: a fork bomb stops here even where kbtool cannot make
    # a pids cgroup for each candidate (inside a container it cannot).
    pids_limit: ClassVar[int | None] = 4096

    def security_flags(self, spec: WorkerSpec) -> list[str]:
        net = [] if spec.share_network else ["--network", "none"]
        caps = ["--cap-drop", "ALL"]
        if self.candidate_sandbox_needs_setfcap(spec):
            caps += ["--cap-add", "SETFCAP"]
        return [*net, "--read-only", *caps, "--security-opt", "no-new-privileges"]

    def scratch_flags(self, spec: WorkerSpec) -> list[str]:
        # Candidates compile and load shared objects from their scratch: it must allow exec
        # (Docker's tmpfs default is noexec).
        if spec.scratch is not None:
            return ["--volume", f"{spec.scratch}:/tmp:rw"]
        return ["--tmpfs", "/tmp:rw,exec,nosuid,nodev"]

    def user_flags(self, spec: WorkerSpec) -> list[str]:
        # Results and heartbeats in the shared directories belong to the caller.
        return ["--user", f"{spec.uid}:{spec.gid}"]

    def image_args(self, spec: WorkerSpec) -> list[str]:
        return [spec.image or self.default_image()]

    def command(self, spec: WorkerSpec) -> list[str]:
        self.check(spec)
        argv = [self.binary, "run", "--rm", "--init"]
        if spec.detach:
            argv.append("--detach")
        if spec.name:
            argv += ["--name", spec.name]
        argv += self.security_flags(spec)
        if self.pids_limit is not None:
            argv += ["--pids-limit", str(self.pids_limit)]
        argv += self.scratch_flags(spec) + self.user_flags(spec)
        for host, inside, mode in spec.binds():
            argv += ["--volume", f"{host}:{inside}:{mode}"]
        for path in spec.code_under_tmp():
            argv += ["--volume", f"{path}:{path}:ro"]
        argv += ["--workdir", "/tmp", "--env", "HOME=/tmp"]
        for item in spec.gpu_env():
            argv += ["--env", item]
        if spec.gpu:
            argv += self.gpu_flags
        return argv + self.image_args(spec) + self.inner_command(spec)

    def build_command(self, definition: Path, tag: str, context: Path,
                      build_args: list[str] | None = None) -> list[str]:
        argv = [self.binary, "build", "--file", str(definition), "--tag", tag]
        for arg in build_args or []:
            argv += ["--build-arg", arg]
        return [*argv, str(context)]


def get_engine(name: str) -> ContainerEngine:
    from kbtool.plugin import registry

    engine: ContainerEngine = registry.CONTAINER_ENGINES.get(name)()
    return engine


def find_context(context: Path | None = None) -> Path:
    """The build context: the kbtool checkout holding ``containers/``."""
    candidates = [context] if context is not None else \
        [Path.cwd(), Path(__file__).resolve().parent.parent]
    for path in candidates:
        if (path / "containers").is_dir() and (path / "pyproject.toml").is_file():
            return path.resolve()
    where = context if context is not None else "the current directory or beside kbtool"
    raise UsageError(f"no kbtool checkout with containers/ in {where}; "
                      "run from a checkout or pass --context DIR")


def build_commands(engine: ContainerEngine, tag: str | None, context: Path,
                   build_args: list[str] | None = None) -> list[list[str]]:
    if engine.definition is None:
        raise UsageError(f"engine {engine.name!r} builds no image")
    definition = context / "containers" / engine.definition
    return engine.build_commands(definition, tag or engine.default_image(), context,
                                 build_args)


def shell_line(argv: list[str]) -> str:
    return shlex.join(argv)


def _abs(path: Path) -> Path:
    return Path(os.path.abspath(os.path.expanduser(path)))


def worker_spec(config: Config, settings: list[str], *, arch: str, image: str | None = None,
                name: str | None = None, detach: bool = False, scratch: Path | None = None,
                share_network: bool = False, serve_options: list[str] | None = None,
                config_file: Path | None = None, gpu_index: str | None = None) -> WorkerSpec:
    """The spec of ``kbtool worker start``: the resolved queue and cache directories, and
    the command line's other ``key=value`` settings passed on to ``worker serve``."""
    if gpu_index is not None and cuda_arch_list(arch) is None:
        raise UsageError("--gpu-index needs a GPU --arch (Ampere, Hopper)")
    if not (config.worker_input_dir and config.worker_output_dir):
        raise UsageError("worker start needs worker_input_dir=IN and worker_output_dir=OUT")
    own = {"worker_input_dir", "worker_output_dir", "cache_dir"}
    return WorkerSpec(
        input_dir=_abs(config.worker_input_dir), output_dir=_abs(config.worker_output_dir),
        cache_dir=_abs(config.cache_dir), arch=arch, image=image,
        settings=[s for s in settings if s.partition("=")[0] not in own],
        serve_options=list(serve_options or []),
        config_file=_abs(config_file) if config_file is not None else None, name=name,
        detach=detach, scratch=_abs(scratch) if scratch is not None else None,
        share_network=share_network, gpu_index=gpu_index)


def start_worker(engine: ContainerEngine, spec: WorkerSpec, dry_run: bool = False) -> None:
    """Print (``dry_run``) or run the engine's command; running replaces this process, so
    signals (SIGTERM drains the worker) reach the engine directly."""
    argv = engine.command(spec)
    if dry_run:
        print(shell_line(argv))
        return
    reason = engine.available()
    if reason is not None:
        raise UsageError(f"engine {engine.name!r} is not usable here: {reason}")
    from kbtool.workers.jobqueue import Queue

    Queue(spec.input_dir, spec.output_dir)  # creates the queue's folders (bind sources)
    for path in (spec.cache_dir, spec.scratch):
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
    print(f"kbtool: starting worker: {shell_line(argv)}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        raise UsageError(f"cannot run {argv[0]!r}: {exc.strerror}") from None


def build_image(engine: ContainerEngine, tag: str | None = None, context: Path | None = None,
                build_args: list[str] | None = None, dry_run: bool = False) -> int:
    """Build the worker image from ``containers/``; returns the exit status."""
    root = find_context(context)
    commands = build_commands(engine, tag, root, build_args)
    if dry_run:
        print(shell_line(["cd", str(root)]))
        for argv in commands:
            print(shell_line(argv))
        return 0
    reason = engine.available()
    if reason is not None:
        raise UsageError(f"engine {engine.name!r} is not usable here: {reason}")
    for argv in commands:
        print(f"kbtool: in {root}: {shell_line(argv)}", file=sys.stderr)
        code = subprocess.run(argv, cwd=root).returncode
        if code != 0:
            return code
    return 0
