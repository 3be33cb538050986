"""Confine an evaluation child with what Linux offers without root: namespaces and limits.

Applied in the forked child before any candidate code runs:
- a user namespace (so the rest needs no privileges), a network namespace with no
  interfaces up (no network, loopback included), a mount namespace in which every mount is
  read-only except the candidate's scratch dir, and a PID namespace whose init is the
  candidate's process (when it dies, the kernel kills everything it started);
- an IPC namespace of its own (System V and POSIX message queues die with it) and a
  private ``/proc`` that shows only the processes of its own PID namespace;
- a cap on the number of processes: the child's cgroup (``kbtool.sandbox.cgroups``, made
  by its parent) where one can be made, else RLIMIT_NPROC (which the kernel does not
  enforce for uid 0).

A judge confined so can confine the runners it starts once more (:func:`confine_runner`):
nested user, mount, PID and IPC namespaces, a private ``/proc`` and only the runner's own
scratch writable, so a candidate sees neither the judge nor the other runner; and a seccomp
filter (``kbtool.sandbox.seccomp``), so a runner makes no namespace of its own.

Where namespaces are unavailable (old kernels, containers that forbid them), ``mode=auto``
runs without them and says so; ``mode=required`` fails the evaluation instead.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.sandbox import seccomp

if TYPE_CHECKING:
    from kbtool.sandbox.cgroups import Group

CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000
CLONE_NEWIPC = 0x08000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
PR_SET_CHILD_SUBREAPER = 36
MOUNT_ATTR_RDONLY = 0x1
AT_FDCWD = -100
AT_RECURSIVE = 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new syscall table)


class SandboxError(Exception):
    """The sandbox could not be set up."""


@dataclass(frozen=True)
class SandboxPolicy:
    mode: str = "auto"          # "auto", "required" or "off"
    max_processes: int = 256    # processes and threads the candidate may have at once
    # False once a probe found namespaces unusable here: a failed set-up can leave a process
    # half inside them (no thread can start there), so later children do not try.
    namespaces: bool = True


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def _mount_setattr(libc: ctypes.CDLL, path: str, set_: int, clear: int) -> None:
    attr = _MountAttr(set_, clear, 0, 0)
    _check(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE,
                        ctypes.byref(attr), ctypes.sizeof(attr)), f"read-only mounts ({path})")


def _limit_processes(policy: SandboxPolicy, cgroup: Group | None) -> str:
    if cgroup is not None and cgroup.counts("pids"):
        return f"processes<={policy.max_processes} (cgroup)"
    if os.getuid() == 0:
        return "processes unlimited (root without a pids cgroup)"
    # RLIMIT_NPROC counts all of the user's processes, so leave room for the existing ones.
    mine = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == os.getuid())
    limit = mine + policy.max_processes
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))
    return f"processes<={policy.max_processes} (rlimit)"


def _owner(path: Path) -> int:
    try:
        return path.stat().st_uid
    except OSError:
        return -1


PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Be killed when the thread that forked this one ends, however it ends (Ctrl-C, a
    crash, SIGKILL): no candidate outlives kbtool, and none runs past its time limit.

    The kernel ties this to the forking *thread*, not its process: a program started by a
    thread that may end before kbtool does must be started with :func:`popen_tied`."""
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# One thread that lives as long as kbtool: the programs it starts are killed when kbtool
# ends, not when the pool or task thread that wanted them returns (an evaluator started by
# a pool's thread lost its zygote, and a search its first evaluations, that way).
_STARTER = ThreadPoolExecutor(1, thread_name_prefix="kbtool-starter")


def popen_tied(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kwargs)`` from a thread that ends only with this process,
    for a program that arms a parent-death signal (:func:`die_with_parent`)."""
    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, **kwargs)

    return _STARTER.submit(start).result()


def _namespaces(scratch: Path, flags: int = CLONE_NEWNET | CLONE_NEWIPC) -> None:
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | flags), "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
    target = str(scratch).encode()
    _check(libc.mount(target, target, None, MS_BIND | MS_REC, None), "scratch bind mount")
    _mount_setattr(libc, "/", MOUNT_ATTR_RDONLY, 0)
    _mount_setattr(libc, str(scratch), 0, MOUNT_ATTR_RDONLY)


def _private_proc() -> bool:
    """Mount a ``/proc`` of this PID namespace (only its processes); False where the kernel
    refuses (a container that masks parts of the host's ``/proc``)."""
    libc = _libc()
    return libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0


def proc_is_own() -> bool:
    """Whether ``/proc`` shows this process under the pid it knows itself by (so pids from
    ``fork`` can be looked up there)."""
    try:
        return os.readlink("/proc/self") == str(os.getpid())
    except OSError:
        return False


def _become_pid_namespace_init(report_pid) -> None:
    """Fork into the new PID namespace.  The caller's process stays behind as a relay that
    waits and exits the way the candidate's process did; only the new process returns."""
    child = os.fork()
    if child == 0:
        die_with_parent()  # the relay below dies with the evaluation's process
        return
    report_pid(child)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    _, status = os.waitpid(child, 0)
    if os.WIFSIGNALED(status):
        died_of = os.WTERMSIG(status)
        if died_of != signal.SIGKILL:  # (whose action cannot be set, nor needs to be)
            signal.signal(died_of, signal.SIG_DFL)
        os.kill(os.getpid(), died_of)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1)


def enter(scratch: Path, policy: SandboxPolicy, cgroup: Group | None, report_pid) -> list[str]:
    """Confine the calling (single-threaded, freshly forked) process, already in ``cgroup``
    (one with ``pids.max`` set, where one could be made); return what applied.

    ``report_pid(pid)`` is called with the pid of the process that goes on to run the
    candidate when it differs from the caller's (the PID namespace needs a fork).
    """
    if policy.mode == "off":
        return ["sandbox off"]
    applied = [_limit_processes(policy, cgroup)]
    if not policy.namespaces:
        return [*applied, "namespaces incomplete (unusable here, see the evaluator's warning)"]
    try:
        _namespaces(scratch)
    except (SandboxError, OSError) as exc:
        if policy.mode == "required":
            raise SandboxError(f"sandbox required but unavailable: {exc}") from None
        return [*applied, f"namespaces incomplete ({exc})"]
    _become_pid_namespace_init(report_pid)
    proc = "private /proc" if _private_proc() else "host /proc visible (cannot mount one here)"
    return [*applied, "no network", "read-only filesystem except scratch", "pid namespace",
            "ipc namespace", proc]


def confine_runner(scratch: Path, policy: SandboxPolicy) -> list[str]:
    """Confine a process a judge forked to run untrusted code (inside the judge's sandbox, when
    it has one): its own user, mount, PID and IPC namespaces, a private ``/proc``, and no
    writable directory but ``scratch``.  Forks into the new PID namespace (only the new
    process returns).  Without namespaces the process becomes a child subreaper instead, so
    what it starts stays among its descendants, where the judge finds and kills it.  Either
    way it may make no namespace of its own from then on (``seccomp``)."""
    if policy.mode == "off":
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return ["runner without namespaces"]
    if not policy.namespaces:
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return ["runner without namespaces", _refuse_namespaces(policy)]
    try:
        _namespaces(scratch, CLONE_NEWIPC)
    except (SandboxError, OSError) as exc:
        if policy.mode == "required":
            raise SandboxError(f"sandbox required but unavailable: {exc}") from None
        _libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        return [f"runner namespaces incomplete ({exc})", _refuse_namespaces(policy)]
    _become_pid_namespace_init(lambda pid: None)
    proc = "private /proc" if _private_proc() else "host /proc visible"
    return ["runner: own pid, ipc and mount namespaces", proc, _refuse_namespaces(policy)]


def _refuse_namespaces(policy: SandboxPolicy) -> str:
    try:
        return f"runner: {seccomp.refuse_namespaces()}"
    except OSError as exc:
        if policy.mode == "required":
            raise SandboxError(f"sandbox required but unavailable: {exc}") from None
        return f"runner: new namespaces not refused ({exc.strerror})"


def close_fds(keep: Iterable[int]) -> None:
    """Close every descriptor from 3 up but ``keep``: a confined process holds nothing of
    its parent's it was not given."""
    last = 2
    for fd in sorted(set(keep)):
        os.closerange(last + 1, fd)
        last = fd
    os.closerange(last + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
