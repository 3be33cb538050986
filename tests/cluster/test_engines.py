"""Container engines: the command lines they run, `kbtool worker start` / `kbtool image
build`, and a containerized worker serving the queue under a real Podman (skipped, with the
reason, where Podman is missing or unusable)."""

from __future__ import annotations

import itertools
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from kbtool import __version__
from kbtool.cluster.containers import WorkerSpec, cuda_arch_list, get_engine
from kbtool.errors import KbtoolError
from kbtool.plugin import registry
from tests.helpers import REPO, SOLUTIONS, run_kbtool

IN, OUT, CACHE = Path("/q/in"), Path("/q/out"), Path("/c/kbtool")
# inside a container the queue and the cache have fixed paths
SERVE = ["worker", "serve", "worker_input_dir=/kbtool-worker/in",
         "worker_output_dir=/kbtool-worker/out", "cache_dir=/kbtool-worker/cache"]
HOST_SERVE = ["worker", "serve", f"worker_input_dir={IN}", f"worker_output_dir={OUT}",
              f"cache_dir={CACHE}"]
IMAGE = f"kbtool-worker:{__version__}"


def spec(arch: str = "Ampere", **kw: object) -> WorkerSpec:
    kw.setdefault("uid", 1000)
    kw.setdefault("gid", 100)
    return WorkerSpec(input_dir=IN, output_dir=OUT, cache_dir=CACHE, arch=arch, **kw)


def pairs(argv: list[str]) -> set[tuple[str, str]]:
    return set(itertools.pairwise(argv))


# -- command lines -----------------------------------------------------------------------------

def test_engines_are_plugins() -> None:
    assert {"local", "docker", "podman", "podman-hpc", "apptainer", "singularity"} <= \
        set(registry.CONTAINER_ENGINES.all())
    proc = run_kbtool("plugins", "--json")
    info = {p["name"]: p for p in json.loads(proc.stdout)}
    assert "register_container_engines" in info["engines"]["hooks"]


def test_docker_command_line() -> None:
    argv = get_engine("docker").command(spec("Ampere", name="w0", settings=["seed=7"]))
    assert argv == [
        "docker", "run", "--rm", "--init", "--name", "w0",
        "--network", "none", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--pids-limit", "4096",
        "--tmpfs", "/tmp:rw,exec,nosuid,nodev", "--user", "1000:100",
        "--volume", "/q/in:/kbtool-worker/in:rw", "--volume", "/q/out:/kbtool-worker/out:rw",
        "--volume", "/c/kbtool:/kbtool-worker/cache:rw",
        "--workdir", "/tmp", "--env", "HOME=/tmp", "--env", "TORCH_CUDA_ARCH_LIST=8.0",
        "--gpus", "all",
        IMAGE, "kbtool", *SERVE, "seed=7"]


@pytest.mark.parametrize(("arch", "value"), [("Ampere", "8.0"), ("Hopper", "9.0"),
                                             ("hopper", "9.0")])
@pytest.mark.parametrize("name", ["docker", "podman", "podman-hpc", "apptainer", "singularity"])
def test_arch_sets_torch_cuda_arch_list(name: str, arch: str, value: str) -> None:
    argv = get_engine(name).command(spec(arch))
    assert ("--env", f"TORCH_CUDA_ARCH_LIST={value}") in pairs(argv)


@pytest.mark.parametrize("name", ["docker", "podman", "podman-hpc", "apptainer", "local"])
def test_gpu_index_pins_one_gpu(name: str) -> None:
    argv = get_engine(name).command(spec("Hopper", gpu_index="2"))
    assert "CUDA_VISIBLE_DEVICES=2" in argv
    assert "CUDA_VISIBLE_DEVICES=2" not in " ".join(get_engine(name).command(spec("Hopper")))


@pytest.mark.parametrize("name", ["docker", "podman", "podman-hpc", "apptainer"])
def test_cpu_arch_has_no_gpu_flags(name: str) -> None:
    argv = get_engine(name).command(spec("cpu"))
    assert not {"--gpus", "--gpu", "--nv", "nvidia.com/gpu=all"} & set(argv)
    assert not any(a.startswith("TORCH_CUDA_ARCH_LIST") for a in argv)


def test_unknown_arch() -> None:
    with pytest.raises(KbtoolError, match="unknown GPU architecture 'Volta'"):
        cuda_arch_list("Volta")
    with pytest.raises(KbtoolError, match="unknown container engine 'dockr'"):
        get_engine("dockr")


def test_podman_rootless_and_rootful() -> None:
    rootless = get_engine("podman").command(spec("Hopper"))
    assert rootless[:2] == ["podman", "run"]
    assert ("--device", "nvidia.com/gpu=all") in pairs(rootless)
    assert ("--userns", "keep-id") in pairs(rootless) and "--user" not in rootless
    assert "SETFCAP" not in rootless
    for flags in (("--network", "none"), ("--cap-drop", "ALL"),
                  ("--security-opt", "no-new-privileges"), ("--volume", "/q/in:/kbtool-worker/in:rw")):
        assert flags in pairs(rootless)
    assert "--read-only" in rootless and rootless[-len(SERVE) - 2:] == [IMAGE, "kbtool", *SERVE]
    rootful = get_engine("podman").command(spec("Hopper", uid=0, gid=0))
    # root inside needs CAP_SETFCAP to map itself into the candidate's user namespace
    assert ("--user", "0:0") in pairs(rootful) and ("--cap-add", "SETFCAP") in pairs(rootful)


def test_podman_rootfs_image() -> None:
    argv = get_engine("podman").command(spec("cpu", image="rootfs:/", python="/venv/bin/python"))
    assert argv[-len(SERVE) - 5:] == ["--rootfs", "/:O", "/venv/bin/python", "-m", "kbtool",
                                      *SERVE]
    assert "--read-only-tmpfs=false" in argv
    assert ("--tmpfs", "/tmp:rw,exec,nosuid,nodev,notmpcopyup") in pairs(argv)
    with pytest.raises(KbtoolError, match="does not take rootfs"):
        get_engine("docker").command(spec(image="rootfs:/"))
    # an interpreter under /tmp would be hidden by the container's own /tmp: bound read-only
    under_tmp = get_engine("podman").command(spec("cpu", image="rootfs:/",
                                                  python="/tmp/ci/.venv/bin/python"))
    assert ("--volume", "/tmp/ci/.venv:/tmp/ci/.venv:ro") in pairs(under_tmp)


def test_podman_hpc_uses_gpu_flag() -> None:
    argv = get_engine("podman-hpc").command(spec("Hopper", detach=True))
    assert argv[:5] == ["podman-hpc", "run", "--rm", "--init", "--detach"]
    assert "--gpu" in argv and "--gpus" not in argv and "--device" not in argv
    assert ("--network", "none") in pairs(argv) and "--read-only" in argv
    assert ("--cap-drop", "ALL") in pairs(argv)
    assert ("--env", "TORCH_CUDA_ARCH_LIST=9.0") in pairs(argv)


def test_apptainer_command_line() -> None:
    argv = get_engine("apptainer").command(spec("Hopper", scratch=Path("/scratch/me")))
    assert argv == [
        "apptainer", "exec", "--nv", "--containall", "--no-privs", "--net", "--network", "none",
        "--env", "TORCH_CUDA_ARCH_LIST=9.0", "--pwd", "/tmp", "--workdir", "/scratch/me",
        "--bind", "/q/in:/kbtool-worker/in:rw", "--bind", "/q/out:/kbtool-worker/out:rw",
        "--bind", "/c/kbtool:/kbtool-worker/cache:rw",
        f"kbtool-worker-{__version__}.sif", "kbtool", *SERVE]
    as_root = get_engine("apptainer").command(spec("cpu", uid=0, gid=0, image="rootfs:/img"))
    assert ("--add-caps", "CAP_SETFCAP") in pairs(as_root) and "--nv" not in as_root
    assert as_root[-len(SERVE) - 4:-len(SERVE) - 3] == ["/img"] and "--no-home" in as_root
    shared = get_engine("apptainer").command(spec("Ampere", share_network=True, image="w.sif"))
    assert "--net" not in shared and "w.sif" in shared
    alias = get_engine("singularity").command(spec("Ampere"))
    assert alias[:3] == ["singularity", "exec", "--nv"] and alias[1:] == \
        get_engine("apptainer").command(spec("Ampere"))[1:]
    with pytest.raises(KbtoolError, match="cannot --detach"):
        get_engine("apptainer").command(spec(detach=True))


def test_local_command_line() -> None:
    argv = get_engine("local").command(spec("Ampere", python="/venv/bin/python"))
    assert argv == ["env", "TORCH_CUDA_ARCH_LIST=8.0", "/venv/bin/python", "-m", "kbtool",
                    *HOST_SERVE]
    assert get_engine("local").command(spec("cpu", python="py"))[:3] == ["py", "-m", "kbtool"]
    with pytest.raises(KbtoolError, match="runs no image"):
        get_engine("local").command(spec(image="x"))


def test_build_commands() -> None:
    ctx = Path("/src/kbtool")
    dockerfile = ctx / "containers" / "Dockerfile"
    assert get_engine("docker").build_commands(dockerfile, "t:1", ctx, ["A=1"]) == [
        ["docker", "build", "--file", str(dockerfile), "--tag", "t:1", "--build-arg", "A=1",
         str(ctx)]]
    hpc = get_engine("podman-hpc").build_commands(dockerfile, "t:1", ctx)
    assert hpc[0][:2] == ["podman-hpc", "build"] and hpc[1] == ["podman-hpc", "migrate", "t:1"]
    definition = ctx / "containers" / "kbtool-worker.def"
    assert get_engine("apptainer").build_commands(definition, "w.sif", ctx) == [
        ["apptainer", "build", "w.sif", str(definition)]]


# -- the CLI -----------------------------------------------------------------------------------

def test_worker_start_dry_run(tmp_path: Path) -> None:
    (tmp_path / "kb.yaml").write_text("seed: 3\n")
    proc = run_kbtool("worker", "start", "--engine", "docker", "--arch", "Hopper", "--dry-run",
                      "--name", "w1", "--max-jobs", "3", "--config-profile", "quick",
                      "--config", "kb.yaml", "worker_input_dir=q/in",
                      f"worker_output_dir={tmp_path / 'out'}", f"cache_dir={tmp_path / 'cache'}",
                      "correctness_trials=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    argv = shlex.split(lines[0])
    assert argv[:2] == ["docker", "run"] and ("--gpus", "all") in pairs(argv)
    binds = {argv[i + 1] for i, a in enumerate(argv) if a == "--volume"}
    assert binds == {f"{tmp_path / 'q' / 'in'}:/kbtool-worker/in:rw",  # relative: made absolute
                     f"{tmp_path / 'out'}:/kbtool-worker/out:rw",
                     f"{tmp_path / 'cache'}:/kbtool-worker/cache:rw",
                     f"{tmp_path / 'kb.yaml'}:/kbtool-worker/config.yaml:ro"}
    assert ("--env", "TORCH_CUDA_ARCH_LIST=9.0") in pairs(argv)
    assert argv[argv.index(IMAGE):] == [
        IMAGE, "kbtool", *SERVE, "correctness_trials=2", "--max-jobs", "3",
        "--config-profile", "quick", "--config", "/kbtool-worker/config.yaml"]
    assert not (tmp_path / "q").exists()  # a dry run creates nothing


@pytest.mark.parametrize(("args", "message"), [
    (["--engine", "dockr", "--arch", "Ampere"], "unknown container engine 'dockr'"),
    (["--engine", "docker", "--arch", "Volta"], "unknown GPU architecture 'Volta'"),
    (["--engine", "docker", "--arch", "Ampere", "bogus_key=1"], "unknown config key"),
    (["--engine", "apptainer", "--arch", "Ampere", "--detach"], "cannot --detach"),
    (["--engine", "docker", "--arch", "cpu", "--image", "rootfs:/"], "does not take rootfs"),
    (["--engine", "docker", "--arch", "cpu", "--gpu-index", "0"], "--gpu-index needs a GPU"),
])
def test_worker_start_errors(args: list[str], message: str) -> None:
    proc = run_kbtool("worker", "start", *args, "--dry-run", "worker_input_dir=/q/in",
                      "worker_output_dir=/q/out")
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_worker_start_needs_the_queue() -> None:
    proc = run_kbtool("worker", "start", "--engine", "docker", "--arch", "Ampere", "--dry-run")
    assert proc.returncode == 2 and "worker_input_dir=IN and worker_output_dir=OUT" in proc.stderr


def test_worker_start_missing_binary() -> None:
    proc = run_kbtool("worker", "start", "--engine", "podman-hpc", "--arch", "Ampere",
                      "worker_input_dir=/q/in", "worker_output_dir=/q/out",
                      env={"PATH": os.path.dirname(sys.executable)})
    assert proc.returncode == 2 and "'podman-hpc' is not on PATH" in proc.stderr


def test_image_build_dry_run() -> None:
    proc = run_kbtool("image", "build", "--engine", "docker", "--dry-run", "--tag", "kw:1",
                      "--build-arg", "TORCH_INDEX_URL=https://example.invalid/whl")
    assert proc.returncode == 0, proc.stderr
    cd, build = (shlex.split(line) for line in proc.stdout.strip().splitlines())
    assert cd == ["cd", str(REPO.resolve())]
    assert build == ["docker", "build", "--file", str(REPO.resolve() / "containers" / "Dockerfile"),
                     "--tag", "kw:1", "--build-arg", "TORCH_INDEX_URL=https://example.invalid/whl",
                     str(REPO.resolve())]
    proc = run_kbtool("image", "build", "--engine", "apptainer", "--dry-run")
    assert shlex.split(proc.stdout.strip().splitlines()[-1]) == [
        "apptainer", "build", f"kbtool-worker-{__version__}.sif",
        str(REPO.resolve() / "containers" / "kbtool-worker.def")]
    proc = run_kbtool("image", "build", "--engine", "local", "--dry-run")
    assert proc.returncode == 2 and "builds no image" in proc.stderr


def test_image_definitions() -> None:
    dockerfile = (REPO / "containers" / "Dockerfile").read_text()
    definition = (REPO / "containers" / "kbtool-worker.def").read_text()
    for text in (dockerfile, definition):
        assert "nvidia/cuda" in text and "devel" in text
        assert "torch" in text and "triton" in text and "pip install" in text
    assert "COPY" in dockerfile and "%files" in definition


# -- a real containerized worker ---------------------------------------------------------------

def _podman_unusable() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (CI: bash .ci/setup-podman.sh)"
    if os.geteuid() != 0:
        return "the end-to-end test runs rootful podman (rootfs:/ through an overlay)"
    try:
        info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "`podman info` did not answer within 60 s"
    if info.returncode != 0:
        return f"`podman info` failed: {(info.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def _wait_for_heartbeat(worker: subprocess.Popen[str], queue_in: Path, timeout_s: float) -> None:
    """Fail at once, with the worker's output, if it exits before its first heartbeat."""
    deadline = time.monotonic() + timeout_s
    while not list((queue_in / "workers").glob("*.json")):
        if worker.poll() is not None:
            pytest.fail(f"the worker exited with {worker.returncode}:\n{worker.stdout.read()}")
        if time.monotonic() > deadline:
            pytest.fail(f"no heartbeat from the worker within {timeout_s:g} s")
        time.sleep(0.2)


def test_local_worker_serves_the_queue(tmp_path: Path) -> None:
    """`--engine local` runs `kbtool worker serve` itself (the process is replaced by it)."""
    queue = [f"worker_input_dir={tmp_path / 'in'}", f"worker_output_dir={tmp_path / 'out'}"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "kbtool", "worker", "start", "--engine", "local", "--arch", "cpu",
         "--max-jobs", "1", "--config-profile", "quick", *queue, "worker_poll_s=0.1",
         f"cache_dir={tmp_path / 'cache'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_heartbeat(worker, tmp_path / "in", 120)
        proc = run_kbtool("eval", "builtin/1/2", "--solution",
                          str(SOLUTIONS / "level1_2_ReLU_torch.py"), "--json",
                          "--config-profile", "quick", "queue_wait_s=240", *queue)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["status"] == "ok"
        assert worker.wait(120) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)


@pytest.mark.slow
def test_podman_worker_serves_the_queue(tmp_path: Path) -> None:
    """`kbtool worker start --engine podman` (the host's root as a read-only rootfs, no
    network, no capabilities but SETFCAP) serves a job; SIGTERM drains it."""
    reason = _podman_unusable()
    if reason:
        pytest.skip(reason)
    name = f"kbtool-test-{uuid.uuid4().hex[:8]}"
    queue = [f"worker_input_dir={tmp_path / 'in'}", f"worker_output_dir={tmp_path / 'out'}"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "kbtool", "worker", "start", "--engine", "podman", "--arch", "cpu",
         "--image", "rootfs:/", "--name", name, "--idle-exit", "300", "--config-profile", "quick",
         *queue, "worker_poll_s=0.1", f"cache_dir={tmp_path / 'cache'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_heartbeat(worker, tmp_path / "in", 180)
        eval_through(queue)
        status = json.loads(run_kbtool("worker", "status", str(tmp_path / "in"), "--output-dir",
                                       str(tmp_path / "out"), "--json").stdout)
        assert status["jobs_done"] == 1
        assert status["workers"][0]["host"] != socket.gethostname()  # it ran in the container
        os.kill(worker.pid, signal.SIGTERM)  # podman passes it on; the worker drains, exits 0
        assert worker.wait(90) == 0
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", name], capture_output=True,
                       timeout=120)
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)


def eval_through(queue: list[str]) -> None:
    """A real evaluation sent through the queue to the containerized worker is correct."""
    proc = run_kbtool("eval", "builtin/1/2", "--solution",
                      str(SOLUTIONS / "level1_2_ReLU_torch.py"), "--json",
                      "--config-profile", "quick", "queue_wait_s=240", *queue)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["correct"], result
    # kbtool's own sandbox of the candidate still applies inside the container
    assert "no network" in result["sandbox"], result["sandbox"]


@pytest.mark.slow
def test_apptainer_worker_serves_the_queue(tmp_path: Path) -> None:
    """Runs only where apptainer and a worker image exist: KBTOOL_TEST_APPTAINER_IMAGE is a
    .sif built from containers/kbtool-worker.def, or rootfs:DIR, a folder holding this
    Python and kbtool (e.g. the host's root bind-mounted there: `mount --bind / DIR`)."""
    image = os.environ.get("KBTOOL_TEST_APPTAINER_IMAGE")
    if shutil.which("apptainer") is None:
        pytest.skip("apptainer is not installed")
    if not image:
        pytest.skip("no worker image: set KBTOOL_TEST_APPTAINER_IMAGE (no registry here to "
                    "build one from)")
    queue = [f"worker_input_dir={tmp_path / 'in'}", f"worker_output_dir={tmp_path / 'out'}"]
    worker = subprocess.Popen(
        [sys.executable, "-m", "kbtool", "worker", "start", "--engine", "apptainer", "--arch",
         "cpu", "--image", image, "--max-jobs", "1", "--config-profile", "quick", *queue,
         f"cache_dir={tmp_path / 'cache'}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        _wait_for_heartbeat(worker, tmp_path / "in", 180)
        eval_through(queue)
        assert worker.wait(120) == 0  # --max-jobs 1
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
