"""The runner's seccomp filter (kbtool.sandbox.seccomp): no new namespace and no
userfaultfd by any route, while what honest candidates do (threads, fork and exec of
compilers, mmap, memfd) works, and the judge can still read the runner's memory."""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import subprocess
import threading
from pathlib import Path

import pytest

from kbtool.sandbox import seccomp

pytestmark = pytest.mark.skipif(platform.machine() not in seccomp._ARCHES,
                                reason=f"no filter is written for {platform.machine()}")
NR = seccomp._ARCHES.get(platform.machine(), (0, {}))[1]
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def syscall(*args: int) -> int:
    """The raw system call (not the C library's wrapper); -errno on failure."""
    result = libc.syscall(*[ctypes.c_long(a) for a in args])
    return -ctypes.get_errno() if result == -1 else result


def filtered(check) -> None:
    """Run ``check()`` in a forked child under the filter; fail with what it said."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        os.close(read_fd)
        message = ""
        try:
            seccomp.refuse_namespaces()
            check()
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
        os.write(write_fd, message.encode() or b"ok")
        os._exit(0)
    os.close(write_fd)
    said = os.read(read_fd, 65536).decode()
    os.waitpid(pid, 0)
    assert said == "ok", said


CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWNET = 0x10000000, 0x20000000, 0x20000, 0x40000000
SIGCHLD = 17


def test_no_route_to_a_new_namespace() -> None:
    def check() -> None:
        for flags in (CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNS, CLONE_NEWNET,
                      CLONE_NEWUSER | CLONE_NEWPID, 0x80):  # 0x80: CLONE_NEWTIME
            assert syscall(NR["unshare"], flags) == -errno.EPERM, hex(flags)
        assert syscall(NR["clone"], CLONE_NEWPID | SIGCHLD, 0, 0, 0, 0) == -errno.EPERM
        assert syscall(NR["clone"], CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0) == -errno.EPERM
        assert syscall(NR["clone3"], 0, 0) == -errno.ENOSYS  # the C library falls back
        fd = os.open("/proc/self/ns/pid", os.O_RDONLY)
        assert syscall(NR["setns"], fd, 0) == -errno.EPERM
        proc = subprocess.run(["unshare", "--user", "--pid", "--fork", "true"],
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "Operation not permitted" in proc.stderr, proc.stderr

    filtered(check)


def test_no_userfaultfd() -> None:
    def check() -> None:
        for flags in (0, 1, os.O_CLOEXEC):  # 1: UFFD_USER_MODE_ONLY, allowed to anyone
            assert syscall(NR["userfaultfd"], flags) == -errno.EPERM
        if Path("/dev/userfaultfd").exists():
            fd = os.open("/dev/userfaultfd", os.O_RDWR)
            assert syscall(NR["ioctl"], fd, seccomp.USERFAULTFD_IOC_NEW, 0) == -errno.EPERM

    filtered(check)


def test_what_honest_candidates_do_still_works(tmp_path: Path) -> None:
    def check() -> None:
        seen: list[int] = []
        thread = threading.Thread(target=lambda: seen.append(1))
        thread.start()
        thread.join()
        assert seen == [1]
        pid = os.fork()  # clone without namespace flags
        if pid == 0:
            os._exit(7)
        assert os.WEXITSTATUS(os.waitpid(pid, 0)[1]) == 7
        source = tmp_path / "a.c"
        source.write_text("int main(void) { return 3; }\n")
        subprocess.run(["cc", str(source), "-o", str(tmp_path / "a")], check=True)
        assert subprocess.run([str(tmp_path / "a")]).returncode == 3
        fd = os.memfd_create("buffer")
        os.ftruncate(fd, 1 << 20)
        with mmap.mmap(fd, 1 << 20) as view:
            view[:4] = b"abcd"
        assert syscall(NR["unshare"], 0x400) == 0  # CLONE_FILES: not a namespace

    filtered(check)


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def test_the_judge_still_reads_the_runners_memory() -> None:
    """The judge reads outputs with process_vm_readv: the filter must not stop it."""
    secret = ctypes.create_string_buffer(b"the runner's output")
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        seccomp.refuse_namespaces()
        os.write(ready_w, b"x")
        os.read(hold_r, 1)
        os._exit(0)
    try:
        os.read(ready_r, 1)
        into = ctypes.create_string_buffer(len(secret.raw))
        local = _IoVec(ctypes.cast(into, ctypes.c_void_p), len(secret.raw))
        remote = _IoVec(ctypes.addressof(secret), len(secret.raw))
        libc.process_vm_readv.restype = ctypes.c_ssize_t
        got = libc.process_vm_readv(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        assert got == len(secret.raw), os.strerror(ctypes.get_errno())
        assert into.raw == secret.raw
        assert "Seccomp:\t2" in Path(f"/proc/{pid}/status").read_text()
    finally:
        os.write(hold_w, b"x")
        os.waitpid(pid, 0)
