"""A seccomp filter for a runner: no new namespaces, no userfaultfd; everything else allowed.

A runner is root in a user namespace of its own, so the kernel would let it make PID, mount,
user... namespaces of its own, where its work would be out of the judge's sight; and a
userfaultfd would let it run code while the judge reads its memory.  The filter (classic
BPF, installed with ``prctl``; inherited by every thread and process the runner makes, and
never removable) answers:

- ``unshare`` and ``clone`` with a ``CLONE_NEW*`` flag, ``setns``, ``userfaultfd`` and the
  ``/dev/userfaultfd`` ioctl that makes one: ``EPERM``;
- ``clone3`` (whose flags sit in memory a filter cannot read): ``ENOSYS``, so the C library
  falls back to ``clone``, where the flags are seen;
- system calls of another ABI (i386 or x32 on x86-64): ``ENOSYS``, so the numbers above
  cannot be reached under other ones.

Threads, ``fork``/``exec`` (compilers, worker pools), ``mmap`` and ``memfd`` are untouched.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

# Everything that makes a namespace (CLONE_NEWTIME shares clone's exit-signal byte: only
# unshare and clone3 can ask for it).
CLONE_NEW_ALL = 0x7E020080
CLONE_NEW_CLONE = CLONE_NEW_ALL & ~0xFF
USERFAULTFD_IOC_NEW = 0xAA00

# Per architecture: its AUDIT_ARCH, and the numbers of the calls the filter looks at.
_ARCHES = {
    "x86_64": (0xC000003E, {"unshare": 272, "setns": 308, "clone": 56, "clone3": 435,
                            "userfaultfd": 323, "ioctl": 16}),
    "aarch64": (0xC00000B7, {"unshare": 97, "setns": 268, "clone": 220, "clone3": 435,
                             "userfaultfd": 282, "ioctl": 29}),
}
_X32_BIT = 0x40000000  # x86-64's x32 ABI: the same calls under other numbers

# Classic BPF.
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06
_SECCOMP_RET_ALLOW, _SECCOMP_RET_ERRNO = 0x7FFF0000, 0x00050000
_NR, _ARCH = 0, 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index  # the low half of a 64-bit argument (little-endian)


def _stmt(code: int, k: int) -> tuple[int, int, int, int]:
    return (code, 0, 0, k)


def _jump(code: int, k: int, true: int, false: int) -> tuple[int, int, int, int]:
    return (code, true, false, k)


def program(arch: str) -> list[tuple[int, int, int, int]]:
    """The filter for ``arch`` (``platform.machine()``), as (code, jt, jf, k) instructions."""
    audit, nr = _ARCHES[arch]
    allow = _stmt(_RET_K, _SECCOMP_RET_ALLOW)
    eperm = _stmt(_RET_K, _SECCOMP_RET_ERRNO | errno.EPERM)
    enosys = _stmt(_RET_K, _SECCOMP_RET_ERRNO | errno.ENOSYS)
    head = [_stmt(_LD_W_ABS, _ARCH), _jump(_JEQ_K, audit, 1, 0), enosys,
            _stmt(_LD_W_ABS, _NR)]
    if arch == "x86_64":
        head += [_jump(_JGE_K, _X32_BIT, 0, 1), enosys]
    # Each check: the number, then (for some) one argument; a match returns.
    checks: list[list[tuple[int, int, int, int]]] = [
        [_jump(_JEQ_K, nr["setns"], 0, 1), eperm],
        [_jump(_JEQ_K, nr["userfaultfd"], 0, 1), eperm],
        [_jump(_JEQ_K, nr["clone3"], 0, 1), enosys],
        [_jump(_JEQ_K, nr["unshare"], 0, 4), _stmt(_LD_W_ABS, _arg_low(0)),
         _jump(_JSET_K, CLONE_NEW_ALL, 0, 1), eperm, allow],
        [_jump(_JEQ_K, nr["clone"], 0, 4), _stmt(_LD_W_ABS, _arg_low(0)),
         _jump(_JSET_K, CLONE_NEW_CLONE, 0, 1), eperm, allow],
        [_jump(_JEQ_K, nr["ioctl"], 0, 4), _stmt(_LD_W_ABS, _arg_low(1)),
         _jump(_JEQ_K, USERFAULTFD_IOC_NEW, 0, 1), eperm, allow],
    ]
    return head + [op for check in checks for op in check] + [allow]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2


def refuse_namespaces() -> str:
    """Install the filter on the calling (single-threaded) process; say what applied.
    Raises ``OSError`` where it cannot be installed."""
    arch = platform.machine()
    if arch not in _ARCHES:
        raise OSError(errno.ENOSYS, f"no seccomp filter is written for {arch}")
    ops = program(arch)
    raw = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *op) for op in ops))
    prog = _SockFprog(len(ops), ctypes.cast(raw, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    # Without privileges a filter needs no_new_privs (set-user-ID programs stay unprivileged).
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
            PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")
    return "no new namespaces, no userfaultfd (seccomp)"
