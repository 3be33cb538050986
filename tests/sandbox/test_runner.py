"""A judge's runner (kbtool.sandbox.runner) in a cgroup of its own: the CPU time of work it
hides from /proc is counted, memory it holds out of any process's sight ends it as the
memory limit, kill ends everything it started; and where no cgroup can be made it says so."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, TypeAdapter

from kbtool.sandbox import cgroups
from kbtool.sandbox.channel import Channel
from kbtool.sandbox.namespaces import SandboxPolicy
from kbtool.sandbox.runner import Runner, RunnerFailed, start_runner


class Do(BaseModel):
    op: Literal["hide", "hoard"]


class Done(BaseModel):
    op: Literal["done"] = "done"


def burn(cpu_s: float) -> None:
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def serve(channel: Channel[Any]) -> None:
    request, _ = channel.receive()
    if request.op == "hide":
        # Work in a detached grandchild nobody reaps: no process in /proc holds its time.
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        done_r, done_w = os.pipe()
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                burn(0.3)
            os._exit(0)
        os.close(done_w)
        os.read(done_r, 1)
    else:  # memory no process maps: in nobody's resident set
        fd = os.memfd_create("hoard")
        for _ in range(256):
            os.write(fd, b"\xa5" * 2**20)
    channel.send(Done())
    channel.receive()  # until told to stop


@pytest.fixture
def parent() -> Iterator[cgroups.Group]:
    try:
        group = cgroups.Group.make()
    except cgroups.CgroupUnavailable as exc:
        pytest.skip(f"no cgroup here: {exc}")
    cgroups.use_for_runners(group)
    yield group
    cgroups.use_for_runners("no cgroup was made for this process's runners")
    group.kill()
    group.remove(wait_s=5.0)


def start(tmp_path: Path, memory_bytes: int = 2**30) -> Runner[Any, Any]:
    runner = start_runner("candidate", serve, tmp_path / "candidate", SandboxPolicy(),
                          TypeAdapter(Do), TypeAdapter(Done), memory_bytes)
    runner.started(time.monotonic() + 120)
    return runner


def test_a_runner_counts_what_it_hides(parent: cgroups.Group, tmp_path: Path) -> None:
    runner = start(tmp_path)
    try:
        assert runner.counted
        assert any(s.startswith("runner cgroup (") for s in runner.sandbox), runner.sandbox
        before = runner.cpu_ns()
        assert isinstance(runner.ask(Do(op="hide"), time.monotonic() + 120), Done)
        assert runner.cpu_ns() - before >= 0.28e9
        assert runner.processes()  # the relay and the runner: pids of this process's view
    finally:
        runner.close()
    assert runner.processes() == []


def test_memory_out_of_any_process_is_the_memory_limit(parent: cgroups.Group,
                                                      tmp_path: Path) -> None:
    runner = start(tmp_path, memory_bytes=128 * 2**20)
    try:
        with pytest.raises(RunnerFailed) as failed:
            runner.ask(Do(op="hoard"), time.monotonic() + 120)
        assert failed.value.status == "memory", failed.value
        assert "exceeded the memory limit" in str(failed.value)
    finally:
        runner.close()


def test_without_a_cgroup_it_says_so(tmp_path: Path) -> None:
    cgroups.use_for_runners("rootless, no delegation")
    try:
        runner = start(tmp_path)
    finally:
        cgroups.use_for_runners("no cgroup was made for this process's runners")
    try:
        assert not runner.counted
        assert "runner not counted by a cgroup (rootless, no delegation): CPU time and memory " \
               "from /proc" in runner.sandbox
        assert runner.cpu_ns() > 0 and runner.processes()
    finally:
        runner.close()
