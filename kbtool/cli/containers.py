"""``kbtool worker start`` and ``kbtool image build``: workers in containers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kbtool.cli.app import ConfigFile, ConfigProfile, image_app, worker_app


@worker_app.command("start")
def worker_start(
    engine: Annotated[str, typer.Option(
        help="local, docker, podman, podman-hpc, apptainer or singularity (plugins add more).")],
    arch: Annotated[str, typer.Option(
        help="GPU generation: Ampere or Hopper (GPU access, TORCH_CUDA_ARCH_LIST); cpu: none.")],
    args: Annotated[list[str] | None, typer.Argument(
        help="worker_input_dir=IN worker_output_dir=OUT and other key=value settings.")] = None,
    image: Annotated[str | None, typer.Option(
        help="Image (default: kbtool-worker:VERSION; apptainer: the .sif file); "
             "rootfs:DIR (podman, apptainer): a directory as read-only root, for testing and "
             "air-gapped hosts.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the command; run nothing.")]
        = False,
    detach: Annotated[bool, typer.Option(help="Start in the background (docker, podman).")]
        = False,
    name: Annotated[str | None, typer.Option(help="Container name (docker, podman).")] = None,
    scratch: Annotated[Path | None, typer.Option(
        help="Disk-backed scratch for /tmp instead of a tmpfs (apptainer: --workdir).")] = None,
    share_network: Annotated[bool, typer.Option(
        help="Keep the host network (only where a site forbids network namespaces).")] = False,
    gpu_index: Annotated[str | None, typer.Option(
        help="The GPU this worker uses (CUDA_VISIBLE_DEVICES), e.g. $SLURM_LOCALID.")] = None,
    max_jobs: Annotated[int | None, typer.Option(help="Exit after this many jobs.")] = None,
    idle_exit: Annotated[float | None, typer.Option(
        help="Exit after this many seconds without a job.")] = None,
    config_file: ConfigFile = None,
    config_profile: ConfigProfile = None,
) -> None:
    """Start `kbtool worker serve` in a container (see docs/containers.md).

    kbtool worker start --engine podman --arch Hopper [--image I] [--dry-run]
        worker_input_dir=IN worker_output_dir=OUT [key=value ...]
    """
    from kbtool.cli.common import make_config, no_words
    from kbtool.cluster import containers
    from kbtool.config import split_overrides

    words, overrides = split_overrides(args or [])
    no_words("worker start", words)
    runner = containers.get_engine(engine)
    containers.cuda_arch_list(arch)
    config = make_config(overrides, config_file, config_profile)
    options = [*(["--max-jobs", str(max_jobs)] if max_jobs is not None else []),
               *(["--idle-exit", str(idle_exit)] if idle_exit is not None else []),
               *(["--config-profile", config_profile] if config_profile else [])]
    spec = containers.worker_spec(config, list(args or []), arch=arch,
                                  image=image, name=name, detach=detach, scratch=scratch,
                                  share_network=share_network, serve_options=options,
                                  config_file=config_file, gpu_index=gpu_index)
    containers.start_worker(runner, spec, dry_run=dry_run)


@image_app.command("build")
def image_build(
    engine: Annotated[str, typer.Option(help="docker, podman, podman-hpc, apptainer, ...")],
    tag: Annotated[str | None, typer.Option(
        help="Image tag (apptainer: the .sif file to write).")] = None,
    context: Annotated[Path | None, typer.Option(
        help="The kbtool checkout to build from (default: this one).")] = None,
    build_arg: Annotated[list[str] | None, typer.Option(
        "--build-arg", help="KEY=VALUE for the image definition (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the commands; run nothing.")]
        = False,
) -> None:
    """Build the worker image from containers/ (CUDA devel base, PyTorch, Triton, kbtool)."""
    from kbtool.cluster import containers

    code = containers.build_image(containers.get_engine(engine), tag, context, build_arg,
                                  dry_run=dry_run)
    if code:
        raise typer.Exit(code)
