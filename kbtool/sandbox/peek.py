"""Reading another process's memory from outside it (``process_vm_readv``).

A judge reads what a runner computed straight from the runner's memory, so nothing the
runner's code does when asked can decide what the judge sees: there is no "send me your
outputs" call for a candidate to answer lazily.  The kernel copies the bytes; the runner's
threads are not involved and cannot tell.  Reading needs ptrace access to the process: the
judge is its ancestor and owns its user namespace.  A process that refuses (it made itself
non-dumpable) or points at memory it does not have gets :class:`Unreadable`.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np

_IOV_MAX = 1024  # iovecs per call (Linux UIO_MAXIOV)


class Unreadable(Exception):
    """The memory could not be read (gone, unmapped, or the process refuses)."""


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


_libc = ctypes.CDLL(None, use_errno=True)
_readv = _libc.process_vm_readv
_readv.restype = ctypes.c_ssize_t
_readv.argtypes = [ctypes.c_int, ctypes.POINTER(_Iovec), ctypes.c_ulong,
                   ctypes.POINTER(_Iovec), ctypes.c_ulong, ctypes.c_ulong]


def read_into(pid: int, spans: np.ndarray, destination: int) -> None:
    """Copy the spans of process ``pid`` (rows of ``address, length``), one after the other,
    into this process's memory at ``destination`` (which must hold their total length)."""
    table = np.asarray(spans, dtype=np.uint64).reshape(-1, 2)
    table = table[table[:, 1] > 0]
    offset = 0
    for start in range(0, len(table), _IOV_MAX):
        chunk = np.ascontiguousarray(table[start:start + _IOV_MAX])  # struct iovec[]
        total = int(chunk[:, 1].sum())
        local = _Iovec(destination + offset, total)
        remote = ctypes.cast(chunk.ctypes.data, ctypes.POINTER(_Iovec))
        got = _readv(pid, ctypes.byref(local), 1, remote, len(chunk), 0)
        if got < 0:
            err = ctypes.get_errno()
            raise Unreadable(f"process {pid}: {os.strerror(err)}")
        if got != total:  # a partial read: part of a span is not mapped
            raise Unreadable(f"process {pid}: {got} of {total} bytes readable")
        offset += total
