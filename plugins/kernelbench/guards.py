"""Run-time checks around a candidate's calls: what it changed that it must not change.

Each check returns reasons (strings); an empty list means nothing was seen.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

# Attribute namespaces whose identities must not change while a candidate runs.
_WATCHED_MODULES = ("time", "timeit", "builtins", "torch", "torch.nn.functional", "torch.cuda",
                    "torch.testing", "triton.testing", "numpy")


def _namespaces() -> dict[str, dict[str, Any]]:
    spaces: dict[str, dict[str, Any]] = {}
    for name in _WATCHED_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            spaces[name] = dict(vars(module))
    torch = sys.modules.get("torch")
    if torch is not None:
        spaces["torch.Tensor"] = dict(vars(torch.Tensor))
        spaces["torch.cuda.Event"] = dict(vars(torch.cuda.Event))
    for name, module in list(sys.modules.items()):  # the harness itself
        if name.split(".")[0] in ("kbtool", "kbtool_plugins") and module is not None:
            spaces[name] = dict(vars(module))
    return spaces


class IdentitySnapshot:
    """Identities of timer, torch and harness functions; compare before and after."""

    def __init__(self) -> None:
        # Imported lazily, torch._dynamo replaces torch functions (torch.manual_seed, ...):
        # import it first, or that would look like a candidate's patching.  The zygote has
        # it already; any other caller pays the import here.
        import torch._dynamo  # noqa: F401

        self._ids = {(space, key): _identity(value) for space, attrs in _namespaces().items()
                     for key, value in attrs.items() if callable(value)}

    def changed(self) -> list[str]:
        now = _namespaces()
        changed = []
        for (space, key), ident in self._ids.items():
            if _identity(now.get(space, {}).get(key)) != ident:
                changed.append(f"{space}.{key}")
        return sorted(changed)


def _identity(value: Any) -> tuple[int, int]:
    # A function keeps its identity when its __code__ is swapped: watch both.
    return id(value), id(getattr(value, "__code__", None))


@dataclass
class ThreadStart:
    name: str
    finished: float | None = None  # perf_counter() when its function returned
    native_id: int | None = None   # the kernel's id of the thread, once it runs


@contextmanager
def thread_starts() -> Iterator[list[ThreadStart]]:
    """Record every thread started inside the block and when its work ended, however briefly
    it lived: work that goes on after a timed call returns is work the timer did not see."""
    import _thread

    started: list[ThreadStart] = []
    hooks = [(module, name) for module, name in ((_thread, "start_new_thread"),
                                                 (threading, "_start_new_thread"),
                                                 (threading, "_start_joinable_thread"))
             if hasattr(module, name)]
    originals = [getattr(module, name) for module, name in hooks]

    def recording(original: Callable[..., Any]) -> Callable[..., Any]:
        def start(function: Any, *args: Any, **kwargs: Any) -> Any:
            record = ThreadStart(getattr(function, "__qualname__", type(function).__name__))
            started.append(record)

            def run(*a: Any, **k: Any) -> Any:
                record.native_id = threading.get_native_id()
                try:
                    return function(*a, **k)
                finally:
                    record.finished = time.perf_counter()
            return original(run, *args, **kwargs)
        return start

    for (module, name), original in zip(hooks, originals, strict=True):
        setattr(module, name, recording(original))
    try:
        yield started
    finally:
        for (module, name), original in zip(hooks, originals, strict=True):
            setattr(module, name, original)


def still_working(started: list[ThreadStart], returned: float,
                  settle_s: float = 0.005) -> list[str]:
    """Threads started inside a call whose work went on after it returned at ``returned``:
    they finished later, or are alive and using the CPU.  An idle thread (the worker pool of
    ``torch.compile``, waiting for work) is not working."""
    late = [s.name for s in started if s.finished is not None and s.finished > returned]
    alive = [s for s in started if s.finished is None]
    if not alive:
        return late
    time.sleep(settle_s)  # a thread just started gets to run and say who it is
    before = {id(s): _thread_cpu_ns(s.native_id) for s in alive}
    time.sleep(settle_s)
    return late + [s.name for s in alive if s.finished is not None or s.native_id is None
                   or _thread_cpu_ns(s.native_id) - before[id(s)] > 200_000]


def _thread_cpu_ns(native_id: int | None) -> int:
    if native_id is None:
        return 0
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as handle:
            return int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def mutated_inputs(pristine: list[Any], used: list[Any]) -> list[str]:
    """Inputs whose values differ from their pristine copies after the candidate ran."""
    import torch

    return [f"input {i}" for i, (p, u) in enumerate(zip(pristine, used, strict=True))
            if isinstance(p, torch.Tensor) and not torch.equal(p, u)
            and not (p.is_floating_point() and torch.equal(p.isnan(), u.isnan())
                     and torch.equal(p.nan_to_num(), u.nan_to_num()))]


def mutated_places(pristine: list[Any], used: list[Any], rng: random.Random, runs: int,
                   run: int) -> list[str]:
    """``mutated_inputs`` at ``runs`` runs of ``run`` elements per input drawn by ``rng``
    (all of a smaller input): cheap enough for every timed call.  A call that writes a share
    f of an input's values escapes with probability at most (1 - f) ** runs."""
    import torch

    found = []
    for i, (p, u) in enumerate(zip(pristine, used, strict=True)):
        if not isinstance(p, torch.Tensor) or p.numel() == 0:
            continue
        a, b = p.reshape(-1), u.reshape(-1)
        n = a.numel()
        if n > runs * run:
            starts = torch.tensor([rng.randrange(n - run + 1) for _ in range(runs)])
            at = (starts[:, None] + torch.arange(run)).reshape(-1)
            a, b = a[at], b[at]
        if mutated_inputs([a], [b]):
            found.append(f"input {i}")
    return found


def foreign_outputs(output: Any) -> list[str]:
    """Outputs that are not plain, materialised tensors (subclasses compute lazily and can
    fake comparisons)."""
    import torch

    items = output if isinstance(output, (list, tuple)) else [output]
    reasons = []
    for i, item in enumerate(items):
        if isinstance(item, (list, tuple)):
            reasons += [f"output {i}: {r}" for r in foreign_outputs(item)]
        elif isinstance(item, torch.Tensor):
            if type(item) is not torch.Tensor and type(item) is not torch.nn.Parameter:
                reasons.append(f"output {i} is a {type(item).__name__}, not a plain tensor")
            elif item.device.type == "meta" or item.is_sparse:
                reasons.append(f"output {i} is a {item.layout} tensor on {item.device}")
        elif not isinstance(item, (int, float, bool)):
            reasons.append(f"output {i} is a {type(item).__name__}")
    return reasons


_NOT_COMPUTE = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
    "zeros_like", "ones", "ones_like", "full", "full_like", "fill_", "zero_", "view",
    "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "contiguous", "clone",
    "copy_", "detach", "alias", "as_strided", "slice", "select", "unsqueeze", "squeeze",
    "lift_fresh", "_to_copy", "to", "split", "split_with_sizes", "unbind", "set_",
    "resize_", "_reshape_alias", "unsafe_view", "lift_fresh_copy", "arange", "scalar_tensor",
}


def compute_ops(fn: Callable[[], Any]) -> tuple[Counter[str], float]:
    """The compute ATen ops ``fn`` dispatches (views, copies and allocations left out), and
    the share of its time spent inside them.  Custom kernels (load_inline functions,
    Triton) do not go through the dispatcher: what they compute is not in that share."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: Counter[str] = Counter()
    inside = [0.0]

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Iterable[type], args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            name = func.overloadpacket.__name__
            if name.rstrip("_") in _NOT_COMPUTE or name in _NOT_COMPUTE:
                return func(*args, **(kwargs or {}))
            seen[name.rstrip("_")] += 1
            start = time.perf_counter()
            try:
                return func(*args, **(kwargs or {}))
            finally:
                inside[0] += time.perf_counter() - start

    start = time.perf_counter()
    with Recorder():
        fn()
    total = time.perf_counter() - start
    return seen, min(1.0, inside[0] / total) if total > 0 else 0.0
