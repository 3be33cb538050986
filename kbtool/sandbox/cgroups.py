"""One cgroup per confined process tree: what it costs and how it ends, counted by the kernel.

A process cannot hide from its cgroup: the CPU time of every process that was ever in it
(exited ones, ones reaped by nobody, ones in nested PID namespaces) stays counted; its
memory cap covers anonymous, file and shared memory (``memfd``, tmpfs, System V segments);
its process cap holds however the processes were made; and the kernel ends them all at once.

cgroup v2 gives all of that in one directory (``cpu.stat``, ``memory.max``, ``pids.max``,
``cgroup.kill``).  Many clusters still mount v1, one hierarchy per controller (``cpuacct``,
``memory``, ``pids``, ``freezer``), often beside a v2 mount with no controllers (which still
counts CPU time and kills).  A :class:`Group` is one directory in each hierarchy that provides
something the others do not, each role taken from v2 where v2 has it.

Everything goes through directory descriptors opened while the mounts were writable: a
descriptor keeps the mount it was opened on, so a process that has since made every mount
read-only (``namespaces.enter``) can still make groups below its own, move processes into
them, read them and end them.  Groups are made below the cgroup kbtool runs in (its limits
still apply), named ``kbtool-...``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# Roles a group may have, and the v1 controller that provides each.
_V1_ROLE = {"cpu": "cpuacct", "memory": "memory", "pids": "pids", "freeze": "freezer"}
_SWEEP_AFTER_S = 600.0  # a group older than this and empty was left by a killed kbtool
_FREEZE_WAIT_S = 1.0


class CgroupUnavailable(Exception):
    """No cgroup could be made here (rootless without delegation, a read-only cgroupfs)."""


@dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup hierarchy and this process's cgroup in it."""

    version: int                  # 1 or 2
    own: Path                     # this process's cgroup (a directory of the mount)
    controllers: frozenset[str]   # v1: the mount's; v2: those our groups can have

    def describe(self) -> str:
        return "v2" if self.version == 2 else f"v1 {','.join(sorted(self.controllers))}"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def hierarchies(mountinfo: str | None = None, cgroups: str | None = None) -> list[Hierarchy]:
    """The cgroup hierarchies mounted here in which this process's cgroup can be found
    (``/proc/self/mountinfo`` and ``/proc/self/cgroup``)."""
    mountinfo = _read(Path("/proc/self/mountinfo")) if mountinfo is None else mountinfo
    cgroups = _read(Path("/proc/self/cgroup")) if cgroups is None else cgroups
    paths: dict[frozenset[str], str] = {}
    v2_path: str | None = None
    for line in cgroups.splitlines():
        hid, listed, where = [*line.split(":", 2), "", ""][:3]
        if hid == "0" and not listed:
            v2_path = where
        elif listed:
            paths[frozenset(listed.split(","))] = where
    found: dict[tuple[int, frozenset[str]], Hierarchy] = {}
    for line in mountinfo.splitlines():
        path: str | None
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        root, mount, fstype = fields[3], fields[4], fields[sep + 1]
        options = fields[sep + 3].split(",") if len(fields) > sep + 3 else []
        if fstype == "cgroup2":
            version, path = 2, v2_path
        elif fstype == "cgroup":
            # A v1 mount's options name the controllers of its hierarchy, as
            # /proc/self/cgroup does ("cpu,cpuacct"; "name=systemd" for a named one).
            names = frozenset(o for o in options if o in _V1_ROLE.values())
            version = 1
            path = next((p for names_of, p in paths.items() if names_of <= set(options)), None)
            if not names:
                continue  # a hierarchy of no controller we use
        else:
            continue
        if path is None:
            continue
        # The mount shows the hierarchy from ``root`` down: our cgroup must lie below it.
        relative = os.path.relpath(path, root)
        if relative.startswith(".."):
            continue
        own = Path(mount.replace("\\040", " ")) / relative
        if version == 2:
            names = frozenset(_read(own / "cgroup.subtree_control").split()) & {"memory", "pids"}
        key = (version, names)
        if key not in found:
            found[key] = Hierarchy(version, Path(os.path.normpath(own)), names)
    return list(found.values())


def _roles(available: list[Hierarchy]) -> dict[str, Hierarchy]:
    """Which hierarchy provides each role: v2 where it has the controller (it always counts
    CPU time and can kill), else the v1 hierarchy of that controller."""
    v2 = next((h for h in available if h.version == 2), None)
    roles: dict[str, Hierarchy] = {}
    if v2 is not None:
        roles["cpu"] = roles["kill"] = v2
        roles.update({name: v2 for name in v2.controllers})
    for role, controller in _V1_ROLE.items():
        if role not in roles and not (role == "freeze" and "kill" in roles):
            v1 = next((h for h in available if h.version == 1 and controller in h.controllers),
                      None)
            if v1 is not None:
                roles[role] = v1
    return roles


def _open_dir(path: str, dir_fd: int | None = None) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)


def _write(dir_fd: int, name: str, value: str) -> None:
    fd = os.open(name, os.O_WRONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
        return data.decode()
    finally:
        os.close(fd)


def _field(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


@dataclass
class Group:
    """One cgroup: a directory in each hierarchy that has a role in it, held open."""

    name: str
    roles: dict[str, Hierarchy]
    dirs: dict[Hierarchy, int]             # the group's directory in each hierarchy
    parents: dict[Hierarchy, int]          # its parent's (to remove it)
    limits: list[str] = field(default_factory=list)  # what was set, for ``describe``
    _own_parents: bool = False             # the parents' descriptors are ours to close

    # -- making ------------------------------------------------------------------------------
    @classmethod
    def make(cls, prefix: str = "kbtool", available: list[Hierarchy] | None = None) -> Group:
        """A new group below this process's own cgroups, meant to hold groups (v2 does not
        let a group with processes hand controllers down); raises
        :class:`CgroupUnavailable` where none can be made."""
        available = hierarchies() if available is None else available
        roles = _roles(available)
        if "cpu" not in roles:
            raise CgroupUnavailable("no cgroup hierarchy with CPU accounting is mounted")
        parents: dict[Hierarchy, int] = {}
        try:
            for h in set(roles.values()):
                parents[h] = _open_dir(str(h.own))
                _sweep(parents[h])
        except OSError as exc:
            _close(parents)
            raise CgroupUnavailable(f"cannot open this process's cgroup ({exc})") from None
        name = f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            group = cls._mkdir(name, roles, parents)
        except CgroupUnavailable:
            _close(parents)
            raise
        group._own_parents = True
        v2 = roles.get("kill")
        if v2 is not None and v2.controllers:
            try:  # the groups below get the controllers
                _write(group.dirs[v2], "cgroup.subtree_control",
                       " ".join(f"+{c}" for c in sorted(v2.controllers)))
            except OSError:  # then they come from v1, where mounted, or not at all
                group.remove()
                bare = Hierarchy(2, v2.own, frozenset())
                return cls.make(prefix, [bare if h == v2 else h for h in available])
        return group

    @classmethod
    def _mkdir(cls, name: str, roles: dict[str, Hierarchy],
               parents: dict[Hierarchy, int]) -> Group:
        dirs: dict[Hierarchy, int] = {}
        group = cls(name, roles, dirs, parents)
        try:
            for h in set(roles.values()):
                os.mkdir(name, dir_fd=parents[h])
                dirs[h] = _open_dir(name, parents[h])
        except OSError as exc:
            group.remove()
            raise CgroupUnavailable(f"cannot make a cgroup ({exc})") from None
        return group

    def child(self, name: str, memory_bytes: int | None = None,
              max_processes: int | None = None) -> Group:
        """A group below this one (its processes count in this one too) with these limits."""
        group = self._mkdir(name, self.roles, self.dirs)
        try:
            group.limit(memory_bytes, max_processes)
        except OSError as exc:
            group.remove()
            raise CgroupUnavailable(f"cannot set a cgroup's limits ({exc})") from None
        return group

    def limit(self, memory_bytes: int | None, max_processes: int | None) -> None:
        """Cap its memory (anonymous, file and shared pages; no swap to hide them in: the
        kernel reclaims what it can, then kills) and its number of processes and threads."""
        if memory_bytes is not None and "memory" in self.roles:
            fd = self._dir("memory")
            if self.roles["memory"].version == 2:
                _write(fd, "memory.max", str(memory_bytes))
                for name, value in (("memory.swap.max", "0"), ("memory.oom.group", "1")):
                    with contextlib.suppress(FileNotFoundError):
                        _write(fd, name, value)
            else:
                _write(fd, "memory.limit_in_bytes", str(memory_bytes))
                with contextlib.suppress(FileNotFoundError):  # swap accounting is optional
                    _write(fd, "memory.memsw.limit_in_bytes", str(memory_bytes))
            self.limits.append(f"memory<={memory_bytes // 2**20} MiB")
        if max_processes is not None and "pids" in self.roles:
            _write(self._dir("pids"), "pids.max", str(max_processes))
            self.limits.append(f"processes<={max_processes}")

    # -- using -------------------------------------------------------------------------------
    def fds(self) -> list[int]:
        """Descriptors a forked child must keep to join, read, end this group or make groups
        below it."""
        return list(self.dirs.values())

    def join(self) -> None:
        """Move the calling process into the group (what it starts from now on is in it)."""
        for fd in self.dirs.values():
            _write(fd, "cgroup.procs", "0")

    def counts(self, role: str) -> bool:
        return role in self.roles

    def _dir(self, role: str) -> int:
        try:
            return self.dirs[self.roles[role]]
        except KeyError:
            raise ValueError(f"the cgroup {self.name} is closed") from None

    def cpu_ns(self) -> int:
        """CPU time of every process ever in the group, to the microsecond or better."""
        if self.roles["cpu"].version == 2:
            return _field(_read_at(self._dir("cpu"), "cpu.stat"), "usage_usec") * 1000
        return int(_read_at(self._dir("cpu"), "cpuacct.usage"))

    def memory_bytes(self) -> int:
        """Memory charged to the group now (what its limit is compared with)."""
        name = "memory.current" if self.roles["memory"].version == 2 else "memory.usage_in_bytes"
        return int(_read_at(self._dir("memory"), name))

    def oom_kills(self) -> int:
        """Processes the kernel has killed for exceeding the group's memory limit."""
        h = self.roles.get("memory")
        if h is None:
            return 0
        name = "memory.events" if h.version == 2 else "memory.oom_control"
        try:
            return _field(_read_at(self._dir("memory"), name), "oom_kill")
        except (OSError, ValueError):
            return 0

    def pids(self) -> list[int]:
        """The processes in the group (pids as this process sees them); none once closed."""
        try:
            return [int(p) for p in _read_at(self._dir("cpu"), "cgroup.procs").split()
                    if p != "0"]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL every process in the group, also ones forking meanwhile (nothing once
        closed: then the kernel has ended them already)."""
        if not self.dirs:
            return
        if "kill" in self.roles:
            try:
                _write(self._dir("kill"), "cgroup.kill", "1")
                return
            except OSError:
                pass  # a kernel before 5.14: one by one
        if "freeze" in self.roles:
            try:
                if self._freeze(self._dir("freeze"), "FROZEN"):
                    self._kill_each()  # frozen: none can fork while the others are killed
                    return
            finally:  # the kills land once thawed
                self._freeze(self._dir("freeze"), "THAWED")
        for _ in range(100):  # until no fork outran the kills (the process cap bounds it)
            if not self._kill_each():
                return

    def _kill_each(self) -> bool:
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        return bool(pids)

    @staticmethod
    def _freeze(dir_fd: int, state: str) -> bool:
        try:
            _write(dir_fd, "freezer.state", state)
            end = time.monotonic() + _FREEZE_WAIT_S
            while _read_at(dir_fd, "freezer.state").strip() != state:
                if time.monotonic() > end:
                    return False
                time.sleep(0.005)
        except OSError:
            return False
        return True

    # -- ending ------------------------------------------------------------------------------
    def remove(self, wait_s: float = 1.0) -> bool:
        """Remove the group (and groups below it) once the kernel has finished ending their
        processes, waiting up to ``wait_s``; close its descriptors.  False if some remain
        (a later sweep removes them)."""
        end = time.monotonic() + wait_s
        removed = True
        for h, parent in self.parents.items():
            if h in self.dirs:
                _remove_below(self.dirs[h], end)
            while True:
                try:
                    os.rmdir(self.name, dir_fd=parent)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    if time.monotonic() > end:
                        removed = False
                        break
                    time.sleep(0.01)
        self.close()
        return removed

    def close(self) -> None:
        _close(self.dirs)
        if self._own_parents:
            _close(self.parents)

    def describe(self) -> str:
        """What the group does, for a ``sandbox`` list."""
        where = ", ".join(f"{role} {h.describe()}" for role, h in sorted(self.roles.items()))
        return f"cgroup ({where}){': ' if self.limits else ''}{', '.join(self.limits)}"


def _close(fds: dict[Hierarchy, int]) -> None:
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _subdirs(dir_fd: int) -> Iterator[str]:
    with contextlib.suppress(OSError), os.scandir(dir_fd) as entries:
        yield from [e.name for e in entries if e.is_dir(follow_symlinks=False)]


def _remove_below(dir_fd: int, end: float) -> None:
    for name in _subdirs(dir_fd):
        try:
            below = _open_dir(name, dir_fd)
        except OSError:
            continue
        try:
            _remove_below(below, end)
        finally:
            os.close(below)
        while True:
            try:
                os.rmdir(name, dir_fd=dir_fd)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > end:
                    break
                time.sleep(0.01)


def _sweep(dir_fd: int, prefix: str = "kbtool-") -> None:
    """Remove kbtool groups left behind by killed evaluators: old ones, with only old groups
    below them (a new one may not have its processes yet), and empty ones (the kernel
    refuses to remove the others)."""
    now = time.time()
    for name in _subdirs(dir_fd):
        if not name.startswith(prefix):
            continue
        with contextlib.suppress(OSError):
            if now - os.stat(name, dir_fd=dir_fd).st_mtime <= _SWEEP_AFTER_S:
                continue
            below = _open_dir(name, dir_fd)
            try:
                _sweep(below, prefix="")
            finally:
                os.close(below)
            os.rmdir(name, dir_fd=dir_fd)


# The group a judge's runners are made in: the evaluation's, set by ``isolation`` in the
# child before it confines itself; or why there is none.
_runner_parent: Group | str = "no cgroup was made for this process's runners"


def use_for_runners(parent: Group | str) -> None:
    global _runner_parent
    _runner_parent = parent


def runner_group(name: str, memory_bytes: int | None,
                 max_processes: int | None) -> Group | str:
    """A group for one runner below this process's evaluation group, or why there is none."""
    parent = _runner_parent
    if isinstance(parent, str):
        return parent
    try:
        return parent.child(f"{name}-{uuid.uuid4().hex[:8]}", memory_bytes, max_processes)
    except CgroupUnavailable as exc:
        return str(exc)
