"""Wait for a new file in a folder: inotify where the kernel has it (local disks), a timed
wait otherwise (NFS and other network filesystems deliver no events for remote writes, so
the timeout doubles as the polling interval there)."""

from __future__ import annotations

import ctypes
import os
import select
import time
from pathlib import Path

IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000
IN_MOVED_TO = 0x00000080


class FolderWatch:
    def __init__(self, folder: Path) -> None:
        self.fd: int | None = None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
            # Jobs arrive by rename; a temporary file closed in the folder is not one yet.
            if fd >= 0 and libc.inotify_add_watch(fd, str(folder).encode(), IN_MOVED_TO) >= 0:
                self.fd = fd
            elif fd >= 0:
                os.close(fd)
        except (OSError, AttributeError):
            self.fd = None

    def wait(self, timeout_s: float) -> None:
        """Return when something arrived in the folder, or after ``timeout_s``."""
        if self.fd is None:
            time.sleep(timeout_s)
            return
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if ready:
            try:
                while os.read(self.fd, 65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
