"""KernelBench problem files: module-level size constants, overrides, loading, memory estimate."""

from __future__ import annotations

import ast
import operator
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


_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
               ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
               ast.Mod: operator.mod, ast.Pow: operator.pow}


def _number(node: ast.AST, known: dict[str, int | float]) -> int | float | None:
    """The value of a constant arithmetic expression over numbers and earlier constants
    (``2048 * 2``, ``-1``, ``dim * 4``); None for anything else."""
    if isinstance(node, ast.Constant):
        value = node.value
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and \
            isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, int):
        return known.get(element_name(node.value.id, node.slice.value))  # ``shape[0]``
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _number(node.operand, known)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        left, right = _number(node.left, known), _number(node.right, known)
        if left is None or right is None:
            return None
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            return None  # not a size: refuse to compute huge powers
        try:
            result = _ARITHMETIC[type(node.op)](left, right)
        except (ArithmeticError, ValueError):
            return None
        return result if isinstance(result, (int, float)) else None
    return None


def element_name(name: str, index: int) -> str:
    """The size constant of one element of a tuple-valued constant: ``input_shape[0]``."""
    return f"{name}[{index}]"


def _constants(tree: ast.Module) -> dict[str, tuple[ast.expr, int | float]]:
    """Module-level ``NAME = <number or arithmetic over numbers>`` assignments (annotated
    ones too): name -> (the value's node, its value); a tuple or list of such values
    (``input_shape = (32768,)``, ``bias_shape = (out_channels, 1, 1)``) gives one constant
    per element, ``NAME[i]``.  A later assignment wins."""
    found: dict[str, tuple[ast.expr, int | float]] = {}
    known: dict[str, int | float] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        parts = value.elts if isinstance(value, (ast.Tuple, ast.List)) else [value]
        numbers = [_number(part, known) for part in parts]
        for name in [n for n in found if n == target.id or n.startswith(target.id + "[")]:
            del found[name]
            del known[name]
        values = [n for n in numbers if n is not None]
        if not parts or len(values) < len(parts):
            continue
        for index, (part, number) in enumerate(zip(parts, values, strict=True)):
            name = target.id if part is value else element_name(target.id, index)
            found[name] = (part, number)
            known[name] = number
    return found


def size_constants(source: str) -> dict[str, int | float]:
    return {name: number for name, (_, number) in _constants(ast.parse(source)).items()}


def derived_constants(source: str) -> set[str]:
    """The size constants computed from others (``N = K // 2``, ``bias_shape = (out_channels,
    1, 1)``): they follow those unless overridden themselves."""
    return {name for name, (node, _) in _constants(ast.parse(source)).items()
            if any(isinstance(part, ast.Name) for part in ast.walk(node))}


def apply_sizes(source: str, sizes: dict[str, int | float], filename: str = "<problem>",
                strict: bool = True) -> str:
    """``source`` with the named module-level constants replaced.

    Only the value's characters change, so every line keeps its number (tracebacks point
    where they should).  ``strict``: a name the source does not define is an error (else it
    is skipped: a candidate need not define every constant of the problem)."""
    if not sizes:
        return source
    constants = _constants(ast.parse(source, filename=filename))
    edits = []
    for name, value in sizes.items():
        if name not in constants:
            if not strict:
                continue
            valid = ", ".join(sorted(constants)) or "none"
            raise TaskRefused(f"{filename} has no size constant {name!r} (its constants: {valid})")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TaskRefused(f"size {name}={value!r} must be a number")
        node, default = constants[name]
        if value <= 0 < default:
            # A zero or negative size makes empty tensors, which compare equal to anything.
            raise TaskRefused(f"size {name}={value!r} must be positive (its default is {default})")
        edits.append((node, repr(value)))
    lines = source.splitlines(keepends=True)
    # Right to left, so earlier offsets stay valid; a multi-line value collapses into its
    # first line and the lines it spanned stay as blank ones.
    for node, text in sorted(edits, key=lambda e: (e[0].lineno, e[0].col_offset), reverse=True):
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        head = _encode_prefix(lines[first], node.col_offset)
        tail = lines[last][_encode_offset(lines[last], node.end_col_offset or 0):]
        lines[first] = head + text + tail
        for index in range(first + 1, last + 1):
            lines[index] = "\n"
    return "".join(lines)


def uses_cuda(source: str) -> bool:
    return cuda_to_cpu(source) != source


def cuda_to_cpu(source: str) -> str:
    """The problem's CUDA devices mapped to the CPU (``cuda_inputs=cpu``): ``.cuda()`` becomes
    ``.cpu()``, a ``"cuda"``/``"cuda:N"`` string ``"cpu"``; only those characters change."""
    edits: list[tuple[int, int, int, int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "cuda" and \
                node.end_lineno is not None and node.end_col_offset is not None:
            edits.append((node.end_lineno, node.end_col_offset - 4, node.end_lineno,
                          node.end_col_offset, "cpu"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                re.fullmatch(r"cuda(:\d+)?", node.value) and node.end_lineno is not None:
            edits.append((node.lineno, node.col_offset, node.end_lineno,
                          node.end_col_offset or 0, '"cpu"'))
    lines = source.splitlines(keepends=True)
    for first, start, last, end, text in sorted(edits, reverse=True):
        line = lines[first - 1]
        lines[first - 1] = _encode_prefix(line, start) + text + \
            line[_encode_offset(line, end):] if first == last else line
    return "".join(lines)


def _encode_offset(line: str, byte_offset: int) -> int:
    """ast column offsets count UTF-8 bytes; str slicing counts characters."""
    return len(line.encode()[:byte_offset].decode(errors="ignore"))


def _encode_prefix(line: str, byte_offset: int) -> str:
    return line[:_encode_offset(line, byte_offset)]


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


def nbytes(obj: Any) -> int:
    return sum(t.nelement() * t.element_size() for t in tensors(obj))


def estimate(module: types.ModuleType) -> dict[str, Any]:
    """What one forward of the problem's reference needs, measured without allocating:
    bytes of inputs, parameters, outputs and the largest intermediate tensor, and FLOPs, on
    the meta device.  A model that cannot be built there (``.item()`` in ``__init__``) is
    built on the CPU (its parameters are needed anyway); what cannot be run on meta counts
    its outputs as big as its inputs, and has no FLOP count."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    largest = [0]

    class Largest(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                               kwargs: dict | None = None) -> Any:
            out = func(*args, **(kwargs or {}))
            largest[0] = max(largest[0], *(t.nelement() * t.element_size()
                                           for t in tensors(out)), 0)
            return out

    on_meta = True
    with torch.device("meta"):
        try:
            inputs = module.get_inputs()
            model = module.Model(*module.get_init_inputs())
        except Exception:
            on_meta = False
    if not on_meta:  # e.g. .item() or a copy to another device: real tensors, no forward
        inputs = module.get_inputs()
        model = module.Model(*module.get_init_inputs())
    flops: int | None = None
    outputs: list[Any] = tensors(inputs)
    if on_meta:
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter, Largest():
                outputs = tensors(model(*inputs))
            flops = int(counter.get_total_flops())
        except Exception as exc:
            # An op without a meta kernel: outputs count as inputs.  Anything else (shapes
            # that do not match) fails on real tensors too: the sizes are not valid.
            if not isinstance(exc, NotImplementedError) and "meta" not in str(exc).lower():
                raise
            largest[0] = 0
    params = list(model.parameters()) + list(model.buffers())
    floats = [t.dtype for t in tensors(inputs) if t.is_floating_point()]
    return {
        "input_bytes": nbytes(inputs),
        "param_bytes": sum(t.nelement() * t.element_size() for t in params),
        "output_bytes": nbytes(outputs),
        "intermediate_bytes": largest[0],
        "flops": flops,
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
