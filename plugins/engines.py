"""Built-in container engines for ``kbtool worker start`` and ``kbtool image build``.

One small class per platform (the base class and the shared policy are in
``kbtool/containers.py``; see docs/containers.md for every flag and why).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from kbtool import __version__
from kbtool.cluster.containers import IMAGE_NAME, ContainerEngine, OciEngine, WorkerSpec
from kbtool.errors import UsageError
from kbtool.plugin.hookspecs import Register, hookimpl


class Local(ContainerEngine):
    name = "local"
    binary = ""
    description = "no container: `kbtool worker serve` in a subprocess"
    definition = None

    def check(self, spec: WorkerSpec) -> None:
        super().check(spec)
        if spec.image is not None:
            raise UsageError("engine 'local' runs no image; drop --image")

    def command(self, spec: WorkerSpec) -> list[str]:
        self.check(spec)
        env = spec.gpu_env()
        if spec.scratch is not None:
            env.append(f"TMPDIR={spec.scratch}")
        prefix = ["env", *env] if env else []
        return [*prefix, spec.python, "-m", "kbtool", *spec.serve_args(inside=False)]


class Docker(OciEngine):
    name = "docker"
    binary = "docker"
    description = "Docker: --gpus all (NVIDIA Container Toolkit)"


class Podman(OciEngine):
    name = "podman"
    binary = "podman"
    description = "Podman CLI: GPUs through CDI (nvidia.com/gpu=all); rootfs: images"
    gpu_flags: ClassVar[tuple[str, ...]] = ("--device", "nvidia.com/gpu=all")
    takes_rootfs = True

    def user_flags(self, spec: WorkerSpec) -> list[str]:
        if spec.uid != 0:  # rootless podman: the caller's uid inside maps to itself outside
            return ["--userns", "keep-id"]
        return super().user_flags(spec)

    def candidate_sandbox_needs_setfcap(self, spec: WorkerSpec) -> bool:
        return spec.uid == 0  # rootful: the worker is root inside (Podman allows unshare)

    def scratch_flags(self, spec: WorkerSpec) -> list[str]:
        if spec.rootfs is None or spec.scratch is not None:
            return super().scratch_flags(spec)
        # A host directory as the root: no tmpfs copies of its /run, /tmp, /var/tmp (the
        # automatic read-only tmpfs mounts copy the host's files up, and fail on /run).
        return ["--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,exec,nosuid,nodev,notmpcopyup"]

    def image_args(self, spec: WorkerSpec) -> list[str]:
        if spec.rootfs is not None:
            # ":O" mounts the directory through an overlay: the host's tree is never written,
            # and "/" works (runc cannot use the host's own / as a plain rootfs).
            return ["--rootfs", f"{spec.rootfs}:O"]
        return super().image_args(spec)


class PodmanHpc(Podman):
    name = "podman-hpc"
    binary = "podman-hpc"
    description = "podman-hpc (NERSC Perlmutter): --gpu; build then migrate"
    gpu_flags: ClassVar[tuple[str, ...]] = ("--gpu",)
    takes_rootfs = False
    pids_limit = None  # left to the site's configuration

    def user_flags(self, spec: WorkerSpec) -> list[str]:
        return []  # podman-hpc maps the calling user itself

    def candidate_sandbox_needs_setfcap(self, spec: WorkerSpec) -> bool:
        return True  # the worker is root inside podman-hpc's user namespace

    def build_commands(self, definition: Path, tag: str, context: Path,
                       build_args: list[str] | None = None) -> list[list[str]]:
        # Compute nodes read images from the squashed store that `migrate` fills.
        return [self.build_command(definition, tag, context, build_args),
                [self.binary, "migrate", tag]]


class Apptainer(ContainerEngine):
    name = "apptainer"
    binary = "apptainer"
    description = "Apptainer: exec --nv --containall --no-privs with binds; rootfs: dirs"
    definition = "kbtool-worker.def"
    takes_rootfs = True  # a directory is a "sandbox" image to Apptainer

    def default_image(self) -> str:
        return f"{IMAGE_NAME}-{__version__}.sif"

    def candidate_sandbox_needs_setfcap(self, spec: WorkerSpec) -> bool:
        return spec.uid == 0  # only root may add capabilities; users map themselves

    def command(self, spec: WorkerSpec) -> list[str]:
        self.check(spec)
        argv = [self.binary, "exec"]
        if spec.gpu:
            argv.append("--nv")
        # --containall: own PID/IPC namespaces, clean environment, private /tmp and $HOME;
        # --no-privs: no capabilities; SIF images are read-only already.
        argv += ["--containall", "--no-privs"]
        if self.candidate_sandbox_needs_setfcap(spec):
            argv += ["--add-caps", "CAP_SETFCAP"]
        if not spec.share_network:
            argv += ["--net", "--network", "none"]
        for item in spec.gpu_env():
            argv += ["--env", item]
        argv += ["--pwd", "/tmp"]
        if spec.scratch is not None:
            argv += ["--workdir", str(spec.scratch)]  # /tmp and $HOME on disk, not in RAM
        if spec.rootfs is not None:
            # A host directory as the image: keep its own $HOME visible (interpreters often
            # live there), read-only like the rest of it.
            argv.append("--no-home")
        for host, inside, mode in spec.binds():
            argv += ["--bind", f"{host}:{inside}:{mode}"]
        image = spec.rootfs if spec.rootfs is not None else spec.image or self.default_image()
        return [*argv, image, *self.inner_command(spec)]

    def build_command(self, definition: Path, tag: str, context: Path,
                      build_args: list[str] | None = None) -> list[str]:
        # %files paths in the definition are relative: the build runs in `context`.
        argv = [self.binary, "build"]
        for arg in build_args or []:
            argv += ["--build-arg", arg]
        return [*argv, tag, str(definition)]


class Singularity(Apptainer):
    name = "singularity"
    binary = "singularity"
    description = "alias of apptainer for SingularityCE / older installs"


ENGINES: tuple[type[ContainerEngine], ...] = (Local, Docker, Podman, PodmanHpc, Apptainer,
                                              Singularity)


@hookimpl
def register_container_engines(register: Register) -> None:
    for engine in ENGINES:
        register(engine.name, engine)
