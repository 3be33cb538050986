"""What a measurement ran on: recorded with every result so numbers can be compared honestly."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
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
    """Environment of the measuring process; initialises CUDA, so call it in a child only.

    torch's own figures where the process has torch (a task kind preloaded it, or the device
    is a GPU); else, without importing it (seconds), its installed version and the CPUs the
    process may use as ``num_threads``."""
    torch: Any = sys.modules.get("torch")
    if torch is None and device == "cuda":
        torch = importlib.import_module("torch")
    env: dict[str, Any] = {
        "kbtool_version": __version__,
        "torch_version": torch.__version__ if torch is not None else _version("torch"),
        "triton_version": _version("triton"),
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "device": device,
        "cpu": cpu_model(),
        "num_threads": torch.get_num_threads() if torch is not None
        else len(os.sched_getaffinity(0)),
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
