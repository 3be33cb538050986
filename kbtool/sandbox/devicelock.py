"""One evaluation at a time measures on a device; others may compile meanwhile.

Correctness and timing hold an exclusive ``flock`` on a per-device file (host, device and
visible GPUs in its name); loading and compiling a candidate happen before it is taken.  The
kernel releases the lock when the evaluation's process ends, however it ends, so a crashed
or killed candidate never leaves the device locked.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from kbtool.config import Config

_held: list[int] = []  # descriptors kept open for the life of the evaluation process


def lock_path(config: Config) -> Path:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all").replace(",", "_") or "none"
    name = f"{socket.gethostname()}-{config.device}-{visible}.lock"
    return config.cache_dir / "locks" / name


def prepare(config: Config) -> None:
    """Create the lock file (the evaluation process may only read the filesystem)."""
    path = lock_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)


def acquire(config: Config) -> None:
    """Block until this process holds the device; it keeps it until it exits."""
    if not config.device_lock or _held:
        return
    try:
        fd = os.open(lock_path(config), os.O_RDONLY)
    except OSError:  # no lock file where this process runs (prepare() was not called)
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
    _held.append(fd)
