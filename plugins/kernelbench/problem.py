"""KernelBench problem files: module-level size constants, overrides, loading, memory estimate."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path
from typing import Any

from kbtool.task.model import TaskRefused

_LEADING_NUMBER = re.compile(r"^(\d+)_")


def task_number(stem: str) -> int | None:
    match = _LEADING_NUMBER.match(stem)
    return int(match.group(1)) if match else None


def _constant_assigns(tree: ast.Module) -> dict[str, ast.AST]:
    """Module-level ``NAME = <int|float literal>`` (or annotated) assignments, by name."""
    found: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and _is_number(value):
            found[target.id] = node
    return found


def _is_number(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, (int, float))
            and not isinstance(node.value, bool))


def size_constants(source: str) -> dict[str, int | float]:
    tree = ast.parse(source)
    return {name: ast.literal_eval(node.value)  # type: ignore[attr-defined]
            for name, node in _constant_assigns(tree).items()}


def apply_sizes(source: str, sizes: dict[str, int | float], filename: str = "<problem>") -> str:
    """Return ``source`` with the named module-level constants replaced."""
    if not sizes:
        return source
    tree = ast.parse(source, filename=filename)
    assigns = _constant_assigns(tree)
    for name, value in sizes.items():
        if name not in assigns:
            valid = ", ".join(sorted(assigns)) or "none"
            raise TaskRefused(f"{filename} has no size constant {name!r} (its constants: {valid})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TaskRefused(f"size {name}={value!r} must be a number")
        default = ast.literal_eval(assigns[name].value)  # type: ignore[attr-defined]
        if value <= 0 < default:
            # A zero or negative size makes empty tensors, which compare equal to anything.
            raise TaskRefused(f"size {name}={value!r} must be positive (its default is {default})")
        assigns[name].value = ast.Constant(value)  # type: ignore[attr-defined]
    return ast.unparse(ast.fix_missing_locations(tree))


def load_module(source: str, name: str, filename: str) -> types.ModuleType:
    """Execute ``source`` as a fresh module registered under ``name``."""
    module = types.ModuleType(name)
    module.__file__ = filename
    sys.modules[name] = module  # dataclasses, pickling and torch.compile look modules up
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def tensors(obj: Any) -> list[Any]:
    """The tensors in an output or input structure (tensors, lists, tuples, dicts)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in tensors(item)]
    return []


def estimate_bytes(module: types.ModuleType) -> dict[str, Any]:
    """Bytes of inputs, parameters and outputs, measured on the meta device (no allocation)."""
    import torch

    with torch.device("meta"):
        init = module.get_init_inputs()
        inputs = module.get_inputs()
        model = module.Model(*init)
        try:
            outputs = tensors(model(*inputs))
        except Exception:  # some ops have no meta kernel; outputs then count as inputs
            outputs = tensors(inputs)
    inp = tensors(inputs)
    params = list(model.parameters()) + list(model.buffers())
    floats = [t.dtype for t in inp if t.is_floating_point()]
    return {
        "input_bytes": sum(t.nelement() * t.element_size() for t in inp),
        "param_bytes": sum(t.nelement() * t.element_size() for t in params),
        "output_bytes": sum(t.nelement() * t.element_size() for t in outputs),
        "empty_outputs": sum(1 for t in outputs if t.nelement() == 0),
        "dtype": str(floats[0]).replace("torch.", "") if floats else None,
    }


def available_memory_bytes() -> int:
    """MemAvailable, bounded by a cgroup memory limit where one is set."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except OSError:
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            avail = min(avail or int(text), int(text))
    return avail if avail is not None else 1 << 62
