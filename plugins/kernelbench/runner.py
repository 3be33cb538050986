"""A KernelBench runner: the process that loads one model (the reference ``Model`` or the
candidate's ``ModelNew``) and calls it as the judge asks (``protocol``).

It runs in a process of its own, forked by the judge and confined (``kbtool.sandbox.runner``).
Once the candidate's module is loaded everything here is the candidate's to change, so the
checks made here (threads still working when a call returns, replaced functions, changed
torch settings, outputs that are not plain tensors) only catch exploits that do not bother to
hide; the judge decides from what it can see itself (docs/integrity.md).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, cast

from kbtool.plugin import registry
from kbtool.sandbox.channel import Channel, SharedBuffer
from kbtool.timing.base import Timer
from kbtool_plugins.kernelbench import guards
from kbtool_plugins.kernelbench.compare import flatten
from kbtool_plugins.kernelbench.problem import apply_sizes, load_module
from kbtool_plugins.kernelbench.protocol import (
    DTYPES,
    Arg,
    Attach,
    Done,
    DType,
    Failed,
    Load,
    Ops,
    OpsSeen,
    Output,
    Prepare,
    Ran,
    Refresh,
    Request,
    Reshape,
    Run,
    Stop,
    TensorSpec,
)

_ALIGN = 64
_PAGE = os.sysconf("SC_PAGE_SIZE")
_ERROR_CHARS = 19_000


def dtype_of(name: str) -> Any:
    import torch

    return getattr(torch, name)


def view(buffer: SharedBuffer, spec: TensorSpec) -> Any:
    """The tensor ``spec`` describes, on ``buffer``'s memory (no copy)."""
    import torch

    dtype = dtype_of(spec.dtype)
    numel = 1
    for n in spec.shape:
        numel *= n
    if numel == 0:
        return torch.empty(spec.shape, dtype=dtype)
    extent = 1 + sum((n - 1) * s for n, s in zip(spec.shape, spec.stride, strict=True))
    flat = torch.frombuffer(buffer.map, dtype=dtype, count=extent, offset=spec.offset)
    return flat.as_strided(spec.shape, spec.stride)


def same_allocator() -> None:
    """The C allocator behaves alike in both runners: freed memory is kept and reused, never
    handed back to the system or mapped afresh.  Otherwise glibc's mmap threshold, which
    moves with each process's history of frees, lets one runner page-fault every output of
    a call and the other not: the reference as its own candidate then measured 0.5x or
    2.7x on KernelBench level 1 (16-25 MB outputs).  A caching allocator does the same on
    a GPU."""
    import ctypes

    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    if hasattr(libc, "mallopt"):  # glibc; other C libraries keep their own behaviour
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 2**31 - 1)


def align(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def torch_settings() -> dict[str, Any]:
    """Global torch state that changes what or how fast every later call computes."""
    import torch

    return {
        "default dtype": str(torch.get_default_dtype()),
        "grad mode": torch.is_grad_enabled(),
        "threads": torch.get_num_threads(),
        "deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
        "float32 matmul precision": torch.get_float32_matmul_precision(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "mkldnn": torch.backends.mkldnn.enabled,
        "active torch function modes": torch._C._len_torch_function_stack(),
        "active torch dispatch modes": torch._C._len_torch_dispatch_stack(),
    }


class ModelRunner:
    """The state of one runner: its model(s), input slots, last outputs."""

    def __init__(self) -> None:
        self.load: Load | None = None
        self.problem = ""                 # the problem's source
        self.timer: Timer | None = None
        self.factory: Any = None
        self.models: dict[str, Any] = {}
        self.buffers: dict[int, SharedBuffer] = {}
        self.args: dict[int, list[Any]] = {}
        self.specs: dict[int, list[Arg]] = {}
        self.last: list[list[Any]] = []  # every call's outputs: the judge reads them
        self.settings: dict[str, Any] = {}
        self.snapshot: guards.IdentitySnapshot | None = None

    # -- requests ---------------------------------------------------------------------------
    def handle(self, request: Request, fds: list[int]) -> Any:
        if isinstance(request, Load):
            return self._load(request, fds[0])
        if isinstance(request, Attach):
            return self._attach(request, fds[0])
        if isinstance(request, Refresh):
            for slot in request.slots:
                self._upload(slot)
            return Done()
        if isinstance(request, Prepare):
            assert self.timer is not None
            self.timer.before_window()
            return Done()
        if isinstance(request, Run):
            return self._run(request)
        if isinstance(request, Ops):
            return self._ops(request.slot)
        if isinstance(request, Reshape):
            return self._reshape(request.sizes)
        raise AssertionError(f"unhandled request {request!r}")

    def _load(self, request: Load, fd: int) -> Done | Failed:
        import torch

        self.load = request
        sources = SharedBuffer.attach(fd, request.problem_bytes + (request.solution_bytes or 0))
        self.problem = bytes(sources.map[:request.problem_bytes]).decode()
        solution = None if request.solution_bytes is None else \
            bytes(sources.map[request.problem_bytes:]).decode()
        sources.close()
        torch.set_num_threads(request.threads)
        torch.set_grad_enabled(False)
        if request.device == "cpu":
            os.environ["TRITON_INTERPRET"] = "1"  # Triton kernels run on its interpreter
            same_allocator()
        self.timer = registry.TIMERS.get(request.timer)
        self.timer.setup(request.device)
        self.settings = torch_settings()
        self.snapshot = guards.IdentitySnapshot()
        try:
            problem = load_module(self.problem, "kbtool_reference", request.problem_file)
            if solution is None:
                self.factory = problem.Model
            else:
                assert request.solution_file is not None
                module = load_module(solution, "kbtool_candidate", request.solution_file)
                self.factory = getattr(module, "ModelNew", None)
                if not isinstance(self.factory, type):
                    return Failed(where="load", error=f"{Path(request.solution_file).name} "
                                                      "defines no class ModelNew")
            self._build(problem)
        except BaseException:
            return Failed(where="load", error=self._trace())
        if request.cpu is not None:
            # Only now: the compilers a load starts (load_inline) use every CPU; the calls
            # that are timed share one.
            os.sched_setaffinity(0, {request.cpu})
        return Done(problems=self._state_problems(full=True))

    def _build(self, problem: Any) -> None:
        import torch

        assert self.load is not None
        torch.manual_seed(self.load.seed)
        model = self.factory(*problem.get_init_inputs()).to(self.load.device)
        self.models = {"eager": model}
        if "compile" in self.load.modes:
            self.models["compile"] = torch.compile(model, mode=self.load.compile_mode)

    def _ops(self, slot: int) -> OpsSeen | Failed:
        model = self.models["eager"]

        def call() -> Any:
            return model(*self.args[slot])

        try:
            call()  # warm: a first call's allocations and lazy set-up are not the ops' time
            counts, share = guards.compute_ops(call)
        except BaseException:
            return Failed(where="call", error=self._trace())
        return OpsSeen(ops=dict(counts.most_common(500)), aten_share=share)

    def _reshape(self, sizes: dict[str, int | float]) -> Done | Failed:
        assert self.load is not None
        try:
            source = apply_sizes(self.problem, sizes, self.load.problem_file)
            self._build(load_module(source, "kbtool_reference_alt", self.load.problem_file))
        except BaseException:
            return Failed(where="load", error=self._trace())
        return Done()

    def _attach(self, request: Attach, fd: int) -> Done:
        old = self.buffers.pop(request.slot, None)
        if old is not None:
            old.close()
        self.buffers[request.slot] = buffer = SharedBuffer.attach(fd, request.size)
        buffer.map[::_PAGE]  # map every page now: the first timed call should not fault them in
        self.specs[request.slot] = request.args
        self.args[request.slot] = []
        self._upload(request.slot)
        return Done()

    def _upload(self, slot: int) -> None:
        """The slot's arguments as the model gets them: on the CPU, tensors on the shared
        buffer itself; on a GPU, copies on the device (refreshed in place: same tensors)."""
        import torch

        assert self.load is not None
        buffer, device = self.buffers[slot], self.load.device
        fresh = [view(buffer, a.tensor) if a.tensor is not None else a.value
                 for a in self.specs[slot]]
        current = self.args[slot]
        if device == "cpu" or not current:
            self.args[slot] = fresh if device == "cpu" else [
                v.to(device) if isinstance(v, torch.Tensor) else v for v in fresh]
            return
        for old, new in zip(current, fresh, strict=True):
            if hasattr(old, "copy_"):
                old.copy_(new)

    def _run(self, request: Run) -> Ran | Failed:
        import torch

        assert self.timer is not None and self.load is not None
        model = self.models[request.model]
        self.last = []
        # In timed windows the judge watches the CPU time of the whole process instead.
        watch: contextlib.AbstractContextManager[list[guards.ThreadStart]] = \
            guards.thread_starts() if request.checked else contextlib.nullcontext([])
        rng = torch.random.get_rng_state() if request.keep_rng else None
        try:
            with watch as started:
                results = [model(*self.args[slot]) for slot in request.slots]
                # Where the judge reads them, inside the window: contiguous, and on a GPU
                # copied to the host (the judge cannot read device memory).
                self.last = [self._readable(flatten(r)) for r in results]
                self.timer.sync()
                returned = time.perf_counter()
        except BaseException:
            self.last = []
            return Failed(where="call", error=self._trace())
        if rng is not None:
            torch.random.set_rng_state(rng)
        outputs = []
        for call in self.last:
            specs = []
            for i, t in enumerate(call):
                dtype = str(t.dtype).replace("torch.", "")
                if dtype not in DTYPES:
                    return Failed(where="call", error=f"output {i} has dtype {dtype}, which "
                                                      "the judge cannot compare")
                specs.append(Output(address=t.data_ptr() if t.numel() else 0,
                                    shape=list(t.shape), dtype=cast(DType, dtype)))
            outputs.append(specs)
        problems = self._state_problems(full=request.checked)
        if request.checked:
            problems += guards.foreign_outputs(results)
        working = guards.still_working(started, returned)
        if working:
            problems.append(f"leaves threads working after it returns ({', '.join(working)})")
        if self.load.device != "cpu" and request.checked:
            self._download_inputs()
        return Ran(calls=len(request.slots), outputs=outputs, problems=problems)

    def _readable(self, outputs: list[Any]) -> list[Any]:
        assert self.load is not None
        if self.load.device == "cpu":
            return [t.detach().contiguous() for t in outputs]
        return [t.detach().to("cpu", non_blocking=True).contiguous() for t in outputs]

    def _download_inputs(self) -> None:
        """The device's inputs back into the shared buffers, so that the judge sees what a
        call changed (on the CPU the model works on those buffers themselves)."""
        for slot, slot_args in self.args.items():
            host = [view(self.buffers[slot], a.tensor) for a in self.specs[slot]
                    if a.tensor is not None]
            device_args = [v for v in slot_args if hasattr(v, "copy_")]
            for h, d in zip(host, device_args, strict=True):
                h.copy_(d)

    # -- checks -----------------------------------------------------------------------------
    def _state_problems(self, full: bool) -> list[str]:
        now = torch_settings()
        changed = [f"{k}: {self.settings[k]} -> {v}" for k, v in now.items()
                   if self.settings.get(k) != v]
        problems = [f"changed torch's global state ({'; '.join(changed)})"] if changed else []
        if full and self.snapshot is not None:
            replaced = self.snapshot.changed()
            if replaced:
                problems.append(f"replaced {', '.join(replaced[:5])}")
        return problems

    def _trace(self) -> str:
        assert self.load is not None
        exc = sys.exc_info()[1]
        assert exc is not None
        where = self.load.solution_file or self.load.problem_file
        if isinstance(exc, SyntaxError):
            text = "".join(traceback.format_exception_only(type(exc), exc))
        else:
            frames = traceback.extract_tb(exc.__traceback__)
            first = next((i for i, f in enumerate(frames) if f.filename == where), None)
            text = traceback.format_exc() if first is None else "".join(
                ["Traceback (most recent call last):\n", *traceback.format_list(frames[first:]),
                 *traceback.format_exception_only(type(exc), exc)])
        return text[-_ERROR_CHARS:]


def contiguous_strides(shape: list[int]) -> list[int]:
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= max(n, 1)
    return list(reversed(strides))


def serve(channel: Channel[Any]) -> None:
    """Answer the judge's requests until it says stop (or closes the channel)."""
    runner = ModelRunner()
    me = os.getpid()
    while True:
        request, fds = channel.receive(max_fds=1)
        if isinstance(request, Stop):
            return
        reply = runner.handle(request, fds)
        if os.getpid() != me:
            # A process the model forked came back here.  Its failure is the model's (a fork
            # bomb's first "Resource temporarily unavailable"); nothing else of it counts.
            if isinstance(reply, Failed):
                channel.send(reply)
            os._exit(0)
        channel.send(reply)
