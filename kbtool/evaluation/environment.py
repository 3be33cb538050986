"""What a measurement ran on: recorded with every result so numbers can be compared honestly."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from kbtool import __version__


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def driver_version() -> str | None:
    """The NVIDIA driver's version (``550.54.15``): the kernel module's, else nvidia-smi's."""
    try:
        match = re.search(r"Kernel Module\s+(\S+)", Path("/proc/driver/nvidia/version").read_text())
        if match:
            return match.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()[0].strip() if out.strip() else None


def collect_env(device: str) -> dict[str, Any]:
    """Environment of the measuring process; initialises CUDA, so call it in a child only."""
    import torch

    env: dict[str, Any] = {
        "kbtool_version": __version__,
        "torch_version": torch.__version__,
        "triton_version": _version("triton"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device,
        "cpu": cpu_model(),
        "num_threads": torch.get_num_threads(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env.update(
            device_name=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cuda_version=torch.version.cuda,
            driver_version=driver_version(),
        )
    else:
        env["device_name"] = env["cpu"]
    return env
