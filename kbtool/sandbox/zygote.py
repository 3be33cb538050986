"""A warm process that imports a task kind's heavy modules once and forks one isolated
child per request.

Forking the caller itself is unsafe: once a process has run a parallel torch op, OpenMP
hangs in its forked children, and an agent or a test runner may well have.  So the
evaluator starts this small server (``python -m kbtool.sandbox.zygote``), which never runs a torch
op itself, and asks it for inspections, baselines and checks over a pipe.  Requests name
the task kind and timer; the zygote finds them through its own plugin manager.

A kind's ``preload`` modules (KernelBench: torch) are imported here the first time a request
names a task of that kind (or, for ``env`` without kinds, every kind's): every later child
inherits them, and a process that only ever checks repository items never imports torch.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from kbtool import log
from kbtool.errors import KbtoolError, RunError, UsageError
from kbtool.sandbox.isolation import Limits, Outcome, Reporter, run_isolated
from kbtool.sandbox.namespaces import die_with_parent, popen_tied


@dataclass(frozen=True)
class Request:
    op: str  # "device", "env", "inspect", "baseline", "check", "side_by_side" or "audit"
    limits: Limits
    kwargs: dict[str, Any]


def _send(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj)
    stream.write(struct.pack("!Q", len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> Any:
    header = stream.read(8)
    if len(header) < 8:
        raise EOFError
    (size,) = struct.unpack("!Q", header)
    return pickle.loads(stream.read(size))


_PARENT = "KBTOOL_ZYGOTE_PARENT"  # the pid of the process the zygote serves


class Zygote:
    """Client side: starts the server lazily and restarts it if it died.

    ``scratch_root``: where the server's own folder goes (removed by ``close``): the caches
    torch makes as it is imported (``import torch._dynamo`` creates inductor's cache folder,
    by default ``torchinductor_<user>`` in the temporary directory, left there for good)
    go there; each child's caches go to its own scratch (``isolation.scratch_env``)."""

    def __init__(self, scratch_root: Path | None = None) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._scratch_root = scratch_root
        self._scratch: Path | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._scratch_root is not None:
            self._scratch_root.mkdir(parents=True, exist_ok=True)
        self._scratch = Path(tempfile.mkdtemp(prefix="zygote-", dir=self._scratch_root))
        env = {**os.environ, "PYTORCH_NVML_BASED_CUDA_CHECK": "1", _PARENT: str(os.getpid()),
               "TORCHINDUCTOR_CACHE_DIR": str(self._scratch / "inductor_cache"),
               "TRITON_CACHE_DIR": str(self._scratch / "triton_cache")}
        # Not ``python -m``: that puts the working directory first on the import path, and a
        # folder named ``kbtool`` there (the parent of a checkout) would be imported instead.
        proc = popen_tied([sys.executable, "-c", _BOOT], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, env=env)
        assert proc.stdin is not None
        _send(proc.stdin, list(sys.path))  # plugins found by the caller must load there too
        return proc

    def call(self, request: Request) -> Outcome:
        """Run ``request`` in a child of the zygote and say what happened."""
        outcome: Outcome = self._ask(request)
        return outcome

    def device(self, name: str) -> str:
        """``auto``/``cpu``/``cuda`` resolved where the evaluations run."""
        resolved: str = self._ask(Request("device", Limits(), {"device": name}))
        return resolved

    def _ask(self, request: Request) -> Any:
        with self._lock:
            for attempt in (1, 2):
                if self._proc is None or self._proc.poll() is not None:
                    self._proc = self._start()
                assert self._proc.stdin is not None and self._proc.stdout is not None
                try:
                    _send(self._proc.stdin, request)
                    reply = _receive(self._proc.stdout)
                except (EOFError, BrokenPipeError, OSError):
                    self.close()
                    if attempt == 2:
                        raise RunError("the evaluation process (kbtool.sandbox.zygote) died; "
                                          "see the messages above") from None
                    continue
                if isinstance(reply, KbtoolError):
                    raise reply
                return reply
        raise AssertionError("unreachable")

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.stdin is not None:
                # A request half-written to a zygote that died is flushed again on close.
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        scratch, self._scratch = self._scratch, None
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


_preloaded: set[str] = set()  # the kinds whose preload modules this process imported


def _preload(kinds: list[str] | None) -> None:
    """Import the ``preload`` modules of ``kinds`` (None: of every kind), once per kind."""
    from kbtool.plugin import registry

    # What loading the plugins has to say, the caller (which loaded them too) said already.
    with log.quiet():
        found = registry.TASK_KINDS.all()
    for name in found if kinds is None else kinds:
        kind = found.get(name)
        if kind is None or name in _preloaded:
            continue  # an unknown kind fails in its request, with the registry's message
        _preloaded.add(name)
        for module in kind.preload:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                logging.getLogger(__name__).warning("task kind %r: cannot preload %s (%s)",
                                                    name, module, exc)


def _child_function(request: Request) -> Any:
    """What the forked child runs for ``request``, once the zygote imported what the kinds
    it names preload."""
    from kbtool.evaluation.environment import collect_env
    from kbtool.plugin import registry
    from kbtool.task.model import TaskRefused

    kw = request.kwargs
    if request.op == "env":
        _preload(kw.get("kinds"))
        return lambda _: collect_env(kw["device"])
    _preload([kw["task"].kind])
    kind = registry.TASK_KINDS.get(kw["task"].kind)
    if request.op == "inspect":
        def inspect(_: Reporter) -> dict[str, Any]:
            try:
                return kind.inspect(kw["task"], kw["config"])
            except TaskRefused as exc:
                return {"refused": str(exc)}
        return inspect
    timer = registry.TIMERS.get(kw["timer"])
    if request.op == "baseline":
        return lambda report: kind.baseline(kw["task"], kw["config"], kw["mode"], timer, report)
    if request.op == "check":
        def check(report: Reporter) -> dict[str, Any]:
            try:
                return kind.check(kw["task"], Path(kw["solution"]), kw["config"], timer, report)
            except TaskRefused as exc:  # the task is broken, not the candidate
                return {"refused": str(exc)}
        return check
    if request.op == "audit":
        return lambda report: kind.audit(kw["task"], kw["config"], timer, report)
    if request.op == "side_by_side":
        return lambda report: kind.side_by_side(kw["task"], Path(kw["solution"]), kw["config"],
                                                timer, report)
    raise ValueError(f"unknown zygote request {request.op!r}")


# What a GPU driver creates (NVIDIA, AMD ROCm, WSL2): without any of them PyTorch sees no
# CUDA device, and "auto" is the CPU without importing torch (seconds) to ask it.
GPU_DEVICE_FILES = ("/dev/nvidiactl", "/dev/kfd", "/dev/dxg")


def resolve_device(device: str) -> str:
    if device == "cpu" or (device == "auto" and
                           not any(os.path.exists(p) for p in GPU_DEVICE_FILES)):
        return "cpu"
    import torch

    cuda = torch.cuda.is_available()  # NVML-based here: CUDA stays uninitialised
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise UsageError("--device cuda: no CUDA device is visible to PyTorch here "
                          f"(torch {torch.__version__})")
    return device


def serve(requests: IO[bytes], replies: IO[bytes]) -> None:
    log.setup()
    while True:
        try:
            request = _receive(requests)
        except EOFError:
            return
        try:
            if request.op == "device":
                reply: Any = resolve_device(request.kwargs["device"])
            else:
                reply = run_isolated(_child_function(request), request.limits)
        except KbtoolError as exc:
            reply = exc
        except Exception as exc:  # a bug here must not take every later evaluation down
            traceback.print_exc()
            reply = RunError(f"internal error in the evaluation process: {exc!r}")
        _send(replies, reply)


def main() -> None:
    # Ctrl-C is kbtool's to handle (it closes this process); this process and its children
    # end with kbtool, however kbtool ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    if str(os.getppid()) != os.environ.get(_PARENT, str(os.getppid())):
        os._exit(1)  # kbtool ended before the line above ran
    # The protocol owns the real stdout; anything printed here goes to stderr instead.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)
    # Nothing is left to clean up: skip the interpreter's teardown, which takes seconds
    # once torch is imported (and the evaluator's close waits for this process to end).
    sys.stderr.flush()
    os._exit(0)


# The zygote's entry: the caller's import path replaces this process's before kbtool loads.
_BOOT = ("import pickle, struct, sys\n"
         "size, = struct.unpack('!Q', sys.stdin.buffer.read(8))\n"
         "sys.path[:] = pickle.loads(sys.stdin.buffer.read(size))\n"
         "from kbtool.sandbox.zygote import main\n"
         "main()\n")
