"""Compare a candidate's outputs with the reference's: count, shape, dtype, values.

Besides the usual ``|new - ref| <= atol + rtol * |ref|`` test, outputs that pass it only
because they are tiny next to ``atol`` (a zero or constant output under a loose tolerance)
are caught by a relative L2 error bound and a constant-output test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kbtool_plugins.kernelbench.settings import DEFAULT_TOLERANCES, Tolerance

# Relative L2 error (||new - ref|| / ||ref||) no honest kernel comes near, by dtype.
REL_L2_BOUND = {"float64": 1e-6, "float32": 1e-2, "float16": 5e-2, "bfloat16": 5e-2}


@dataclass
class Comparison:
    incorrect: str | None = None      # why the outputs differ
    slipped: str | None = None        # passed the tolerance, but only by exploiting it
    max_abs_diff: list[float | None] = field(default_factory=list)


def flatten(obj: Any) -> list[Any]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in flatten(item)]
    if isinstance(obj, (int, float, bool)):
        return [torch.tensor(obj)]
    raise TypeError(f"output of type {type(obj).__name__} is not a tensor or a tuple of tensors")


def compare_outputs(ref: Any, new: Any, tolerances: dict[str, Tolerance]) -> Comparison:
    import torch

    ref_t, new_t = flatten(ref), flatten(new)
    result = Comparison()
    if len(ref_t) != len(new_t):
        result.incorrect = f"candidate returned {len(new_t)} outputs, reference {len(ref_t)}"
        return result
    for i, (r, n) in enumerate(zip(ref_t, new_t, strict=True)):
        if r.shape != n.shape:
            result.incorrect = f"output {i}: shape {tuple(n.shape)}, expected {tuple(r.shape)}"
            return result
        if r.dtype != n.dtype:
            result.incorrect = f"output {i}: dtype {n.dtype}, expected {r.dtype}"
            return result
        r64 = r.detach().to("cpu", torch.float64)
        n64 = n.detach().to("cpu", torch.float64)
        same = (r64 == n64) | (torch.isnan(r64) & torch.isnan(n64))  # inf == inf, NaN == NaN
        diff = (r64 - n64).abs().masked_fill(same, 0.0)
        worst = float(diff.max()) if diff.numel() else 0.0
        result.max_abs_diff.append(worst if worst == worst and worst != float("inf") else None)
        if result.incorrect or result.slipped:
            continue
        dtype = str(r.dtype).replace("torch.", "")
        if not (r.is_floating_point() or r.is_complex()):
            if worst != 0.0:
                result.incorrect = f"output {i}: values differ (max abs diff {worst:.3g}); " \
                                   "exact match needed"
            continue
        tol = tolerances.get(dtype, DEFAULT_TOLERANCES["float32"])
        bad = ~(diff <= tol.atol + tol.rtol * r64.abs()) & ~same
        if bool(bad.any()):
            result.incorrect = (f"output {i}: {int(bad.sum())} of {r.numel()} values differ beyond "
                                f"atol={tol.atol:g}, rtol={tol.rtol:g} (max abs diff {worst:.3g})")
            continue
        result.slipped = _slipped(i, r64, n64, diff, dtype)
    return result


def _slipped(i: int, r64: Any, n64: Any, diff: Any, dtype: str) -> str | None:
    import torch

    finite = torch.isfinite(r64) & torch.isfinite(n64)
    if int(finite.sum()) < 2:
        return None
    r_f, n_f, d_f = r64[finite], n64[finite], diff[finite]
    if float(n_f.max() - n_f.min()) == 0.0 and float(r_f.max() - r_f.min()) > 0.0:
        return f"output {i} is constant ({float(n_f[0]):.3g}) where the reference's is not"
    norm = float(torch.linalg.vector_norm(r_f))
    bound = REL_L2_BOUND.get(dtype, REL_L2_BOUND["float32"])
    if norm > 0 and float(torch.linalg.vector_norm(d_f)) / norm > bound:
        rel = float(torch.linalg.vector_norm(d_f)) / norm
        return (f"output {i} passes the tolerance only because its values are tiny: relative "
                f"L2 error {rel:.3g} (bound {bound:g})")
    return None


def merge_worst(worst: list[float | None], diffs: list[float | None]) -> list[float | None]:
    """Per-output maximum over trials (None, a non-finite difference, wins)."""
    if not worst:
        return list(diffs)
    return [None if a is None or b is None else max(a, b)
            for a, b in zip(worst, diffs, strict=False)]
