"""kbtool.sandbox.cgroups on this machine's real hierarchies (v1 controllers beside a v2
mount here; each test says which path it takes): what a process hides from /proc is counted,
capped and ended by its cgroup.  Tests skip, with the reason, where no cgroup can be made."""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbtool.sandbox import cgroups, namespaces
from kbtool.sandbox.cgroups import CgroupUnavailable, Group, Hierarchy

CLONE_NEWUSER, CLONE_NEWPID = 0x10000000, 0x20000000
ALL = cgroups.hierarchies()
V1 = [h for h in ALL if h.version == 1]
LAYOUTS = {
    "as chosen": ALL,  # here: CPU time and kill from v2, memory and pids from v1
    "v1 only": V1,  # CPU time from cpuacct, kill by the freezer
    "v1 without freezer": [h for h in V1 if "freezer" not in h.controllers],  # one by one
}


def make(layout: str) -> Group:
    available = LAYOUTS[layout]
    try:
        return Group.make(available=available)
    except CgroupUnavailable as exc:
        pytest.skip(f"no cgroup here ({layout}): {exc}")


@pytest.fixture
def group(request: pytest.FixtureRequest) -> Iterator[Group]:
    layout = getattr(request, "param", "as chosen")
    parent = make(layout)
    yield parent
    parent.kill()
    assert parent.remove(wait_s=5.0)


def burn(cpu_s: float) -> None:
    """Use ``cpu_s`` of CPU time (however busy the machine: its own CPU clock)."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def in_child(target: Group, body: Callable[[], None]) -> int:
    """Fork a process that joins ``target`` and runs ``body``; its pid."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        code = 1
        try:
            target.join()
            body()
            code = 0
        finally:
            os._exit(code)
    return pid


def unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        os._exit(77)  # namespaces unusable here: the test skips


def hide_work(cpu_s: float) -> None:
    """Work in two places a judge reading /proc misses: a process in a nested PID namespace,
    and a detached one that nobody reaps (SIGCHLD ignored); returns when both are done."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    done_r, done_w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            burn(cpu_s)
        os._exit(0)
    if os.fork() == 0:
        unshare(CLONE_NEWUSER | CLONE_NEWPID)
        if os.fork() == 0:  # pid 1 of its own PID namespace
            burn(cpu_s)
        os._exit(0)
    os.close(done_w)
    os.read(done_r, 1)  # every copy of the write end is closed: both have exited


def wait_exit(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 77:
        pytest.skip("user and PID namespaces are unavailable here")
    return status


@pytest.mark.parametrize("group", ["as chosen", "v1 only"], indirect=True)
def test_cpu_time_of_hidden_processes_is_counted(group: Group) -> None:
    runner = group.child("runner")
    before = runner.cpu_ns()
    status = wait_exit(in_child(runner, lambda: hide_work(0.3)))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    used = runner.cpu_ns() - before
    assert used >= 0.55e9, used  # both workers' 0.3 s, though all of them have exited
    assert runner.pids() == []


@pytest.mark.parametrize("group", list(LAYOUTS), indirect=True)
def test_kill_ends_every_process(group: Group, request: pytest.FixtureRequest) -> None:
    """A detached grandchild, a process tree in a nested PID namespace and a process that
    forks without end all go (cgroup.kill; the freezer; one by one)."""
    runner = group.child("runner", max_processes=32)
    how = "kill" if "kill" in runner.roles else "freeze" if "freeze" in runner.roles else None
    wanted = {"as chosen": how, "v1 only": "freeze", "v1 without freezer": None}
    if how != wanted[request.node.callspec.params["group"]]:
        pytest.skip(f"this layout does not end processes the way the test means here: {how}")

    def scatter() -> None:
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(3600)
            os._exit(0)
        if os.fork() == 0:
            unshare(CLONE_NEWUSER | CLONE_NEWPID)
            if os.fork() == 0:
                for _ in range(3):
                    if os.fork() == 0:
                        time.sleep(3600)
                time.sleep(3600)
            time.sleep(3600)
        while True:  # forks until the process cap, and on
            try:
                if os.fork() == 0:
                    time.sleep(3600)
            except OSError:
                time.sleep(0.001)

    pid = in_child(runner, scatter)
    deadline = time.monotonic() + 60
    while len(runner.pids()) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(runner.pids()) >= 12
    runner.kill()
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 30
    while runner.pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.pids() == []
    assert runner.remove(wait_s=5.0)


def test_the_process_cap_holds(group: Group) -> None:
    runner = group.child("runner", max_processes=8)
    assert runner.counts("pids"), runner.roles

    def fork_many() -> None:
        made = 0
        for _ in range(20):
            try:
                if os.fork() == 0:
                    time.sleep(3600)
                made += 1
            except BlockingIOError:
                pass
        os._exit(made)

    status = wait_exit(in_child(runner, fork_many))
    assert os.WEXITSTATUS(status) == 7  # itself and 7 more
    runner.kill()


@pytest.mark.parametrize("where", ["memfd", "/dev/shm"])
def test_memory_held_out_of_any_process_ends_the_hoarder(group: Group, where: str) -> None:
    """Pages written to a memfd or a tmpfs file (mapped by nobody, in nobody's resident
    memory) count against the cap; the kernel kills for it and says so."""
    limit = 64 * 2**20
    runner = group.child("runner", memory_bytes=limit)
    assert runner.counts("memory"), runner.roles
    path = Path("/dev/shm") / f"kbtool-test-{os.getpid()}"

    def hoard() -> None:
        fd = os.memfd_create("hoard") if where == "memfd" else os.open(
            path, os.O_CREAT | os.O_WRONLY, 0o600)
        for _ in range(2 * limit // 2**20):
            os.write(fd, b"\xa5" * 2**20)

    try:
        status = wait_exit(in_child(runner, hoard))
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        assert runner.oom_kills() >= 1
    finally:
        path.unlink(missing_ok=True)


def test_groups_are_made_and_used_from_a_read_only_mount_namespace(group: Group,
                                                                   tmp_path: Path) -> None:
    """A judge makes its runners' groups after it has made every mount read-only."""
    def judge() -> None:
        try:
            namespaces._namespaces(tmp_path)
        except namespaces.SandboxError:
            os._exit(77)
        try:
            os.mkdir("/sys/fs/cgroup/kbtool-must-fail")
            os._exit(3)  # the mount was writable after all: the test proves nothing
        except OSError:
            pass
        runner = group.child("runner", memory_bytes=2**30, max_processes=16)
        pid = in_child(runner, lambda: burn(0.2))
        os.waitpid(pid, 0)
        used = runner.cpu_ns()
        runner.kill()
        os._exit(0 if used >= 0.18e9 and runner.remove() else 4)

    status = wait_exit(in_child(group.child("judge"), judge))
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


HYBRID_MOUNTS = """\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_CGROUPS = """\
9:name=systemd:/user.slice
8:pids:/user.slice/user-1000.slice
4:memory:/job/42
2:cpu,cpuacct:/
0::/user.slice
"""


def test_hierarchies_and_roles_of_a_hybrid_host() -> None:
    found = {h.controllers: h for h in cgroups.hierarchies(HYBRID_MOUNTS, HYBRID_CGROUPS)}
    assert found[frozenset({"cpuacct"})].own == Path("/sys/fs/cgroup/cpu,cpuacct")
    assert found[frozenset({"memory"})].own == Path("/sys/fs/cgroup/memory/job/42")
    assert found[frozenset({"pids"})].own == Path("/sys/fs/cgroup/pids/user.slice/user-1000.slice")
    v2 = next(h for h in found.values() if h.version == 2)
    assert v2.own == Path("/sys/fs/cgroup/unified/user.slice")
    assert len(found) == 4  # name=systemd has no controller of use
    roles = cgroups._roles(list(found.values()))
    assert roles["cpu"] is v2 and roles["kill"] is v2  # v2 without controllers still counts
    assert roles["memory"].version == 1 and roles["pids"].version == 1
    assert "freeze" not in roles  # cgroup.kill does it


def test_a_group_outside_the_mounted_view_is_not_used() -> None:
    """A container's mount shows its own subtree only: a cgroup outside it cannot be used."""
    mounts = "41 31 0:38 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroups.hierarchies(mounts, "0::/docker/abc/inner\n")[0].own == Path(
        "/sys/fs/cgroup/inner")
    assert cgroups.hierarchies(mounts, "0::/elsewhere\n") == []
    with pytest.raises(CgroupUnavailable, match="CPU accounting"):
        Group.make(available=[])


def test_old_empty_groups_are_swept(group: Group) -> None:
    """Making a group sweeps what killed evaluators left: old, empty groups, not a young
    one below an old one (its runner may be about to join it)."""
    h = next(iter(group.dirs))
    left, young = h.own / "kbtool-1-deadbeef", h.own / "kbtool-2-deadbeef"
    (left / "runner").mkdir(parents=True)
    (young / "runner").mkdir(parents=True)
    for path in (left / "runner", left, young):
        os.utime(path, (0, 0))
    try:
        make("as chosen").remove()
        assert not left.exists()
        assert (young / "runner").exists()
    finally:
        for path in (left / "runner", left, young / "runner", young):
            if path.exists():
                path.rmdir()


def test_without_delegation_no_group_is_made() -> None:
    """Rootless, with root's cgroups: no group, and why."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            os.setgid(65534)
            os.setuid(65534)
            Group.make()
            os.write(write_fd, b"made")
        except CgroupUnavailable as exc:
            os.write(write_fd, str(exc).encode())
        except OSError:
            os.write(write_fd, b"skip")
        os._exit(0)
    os.close(write_fd)
    said = os.read(read_fd, 4096).decode()
    os.waitpid(pid, 0)
    if said == "skip" or os.getuid() != 0:
        pytest.skip("cannot become another user here")
    owned = any(h.own.stat().st_uid == 65534 for h in ALL)
    assert owned or "Permission denied" in said, said



def test_controllers_v2_cannot_hand_down_come_from_v1() -> None:
    """Where the v2 group cannot pass the memory controller to its groups (it is bound to v1
    here), memory comes from the v1 hierarchy instead of from nowhere."""
    v2 = next((h for h in ALL if h.version == 2), None)
    if v2 is None or "memory" in v2.controllers or not any("memory" in h.controllers
                                                           for h in V1):
        pytest.skip("needs a v2 mount without the memory controller beside a v1 memory one")
    claimed = [Hierarchy(2, v2.own, frozenset({"memory"})) if h == v2 else h for h in ALL]
    group = Group.make(available=claimed)
    try:
        assert group.roles["memory"].version == 1
        assert group.roles["cpu"].version == 2
        runner = group.child("runner", memory_bytes=2**30)
        assert runner.memory_bytes() >= 0
    finally:
        group.remove()
