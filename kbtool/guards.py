"""Run-time checks around a candidate's calls: what it changed that it must not change.

Each check returns reasons (strings); an empty list means nothing was seen.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable
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


def new_threads(before: set[threading.Thread]) -> list[str]:
    """Python threads started since ``before`` and still running."""
    return [t.name for t in threading.enumerate() if t not in before and t.is_alive()]


def tensors(obj: Any) -> list[Any]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in tensors(item)]
    return []


def mutated_inputs(pristine: list[Any], used: list[Any]) -> list[str]:
    """Inputs whose values differ from their pristine copies after the candidate ran."""
    import torch

    return [f"input {i}" for i, (p, u) in enumerate(zip(pristine, used, strict=True))
            if isinstance(p, torch.Tensor) and not torch.equal(p, u)
            and not (p.is_floating_point() and torch.equal(p.isnan(), u.isnan())
                     and torch.equal(p.nan_to_num(), u.nan_to_num()))]


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


def scrub_freed_memory(nbytes: int, device: str) -> None:
    """Overwrite memory the allocator has just been given back, so a candidate that reads
    uninitialised memory (``torch.empty``) finds garbage, not an earlier output."""
    import torch

    if nbytes <= 0:
        return
    if device == "cuda":
        torch.cuda.synchronize()
    blocks = [torch.full((max(1, n // 4),), float("nan"), device=device)
              for n in (nbytes, nbytes // 2, nbytes // 4) if n >= 4]
    del blocks


_NOT_COMPUTE = {
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "zeros",
    "zeros_like", "ones", "ones_like", "full", "full_like", "fill_", "zero_", "view",
    "_unsafe_view", "reshape", "t", "transpose", "permute", "expand", "contiguous", "clone",
    "copy_", "detach", "alias", "as_strided", "slice", "select", "unsqueeze", "squeeze",
    "lift_fresh", "_to_copy", "to", "split", "split_with_sizes", "unbind", "set_",
    "resize_", "_reshape_alias", "unsafe_view", "lift_fresh_copy", "arange", "scalar_tensor",
}


def compute_ops(fn: Callable[[], Any]) -> Counter[str]:
    """The compute ATen ops ``fn`` dispatches (views, copies and allocations left out).
    Custom kernels (load_inline functions, Triton) do not go through the dispatcher."""
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: Counter[str] = Counter()

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Iterable[type], args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            name = func.overloadpacket.__name__
            if name.rstrip("_") not in _NOT_COMPUTE and name not in _NOT_COMPUTE:
                seen[name.rstrip("_")] += 1
            return func(*args, **(kwargs or {}))

    with Recorder():
        fn()
    return seen
