"""Compare a candidate's outputs with the reference's: count, shape, dtype, values.

Besides the usual ``|new - ref| <= atol + rtol * |ref|`` test, outputs that pass it only
because they are tiny next to ``atol`` (a zero or constant output under a loose tolerance, a
scalar loss of 2e-6 answered as 0) are caught by a relative L2 error bound, which every
output must meet, scalars included, and a constant-output test.  The bound's denominator
has a floor (``atol / 100`` per element): outputs that are truly zero are not held to a
relative error of their rounding noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from kbtool_plugins.kernelbench.settings import DEFAULT_TOLERANCES, Tolerance

# Relative L2 error (||new - ref|| / ||ref||) no honest kernel comes near, by dtype.
REL_L2_BOUND = {"float64": 1e-6, "float32": 1e-2, "float16": 5e-2, "bfloat16": 5e-2}
# The denominator's floor, per element, as a share of atol: what "zero" means to the bound.
ZERO_SHARE_OF_ATOL = 1e-2


@dataclass
class Comparison:
    incorrect: str | None = None      # why the outputs differ
    slipped: str | None = None        # passed the tolerance, but only by exploiting it
    max_abs_diff: list[float | None] = field(default_factory=list)


def flatten(obj: Any) -> list[Any]:
    """The tensors of a model's output, in order (numbers as 0-d tensors)."""
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in flatten(item)]
    if isinstance(obj, (int, float, bool)):
        return [torch.tensor(obj)]
    raise TypeError(f"an output of type {type(obj).__name__} is not a tensor or a tuple of "
                    "tensors")


# Elements compared at once: the working copies of a chunk (a few MB) bound the memory a
# comparison needs, whatever the output's size.
CHUNK = 1 << 21


@dataclass
class _Stats:
    """What one output's comparison accumulates over its chunks."""

    worst: float = 0.0
    bad: int = 0
    finite: int = 0
    ref_sq: float = 0.0
    diff_sq: float = 0.0
    new_min: float = float("inf")
    new_max: float = float("-inf")
    ref_min: float = float("inf")
    ref_max: float = float("-inf")


def _compute_dtype(dtype: Any) -> Any:
    import torch

    # Half precisions are compared in float32, float32 in itself (its differences are exact
    # near equality), everything else (float64, integers) in float64.
    if dtype in (torch.float16, torch.bfloat16, torch.float32):
        return torch.float32
    return torch.float64


def _accumulate(stats: _Stats, r: Any, n: Any, tol: Tolerance | None) -> None:
    import torch

    diff = torch.sub(r, n).abs_()
    if not diff.numel():
        return
    # torch's max propagates NaN: a finite maximum means every value of both outputs is
    # finite, the common case, compared in a few passes without masks (the general path
    # below costs about ten times as much).
    worst = float(diff.max())
    if not math.isfinite(worst):
        _accumulate_nonfinite(stats, r, n, tol)
        return
    stats.worst = max(stats.worst, worst)
    if tol is None:
        return
    stats.bad += int(torch.count_nonzero(diff > r.abs().mul_(tol.rtol).add_(tol.atol)))
    stats.finite += diff.numel()
    stats.ref_sq += float(torch.linalg.vector_norm(r, dtype=torch.float64)) ** 2
    stats.diff_sq += float(torch.linalg.vector_norm(diff, dtype=torch.float64)) ** 2
    _extremes(stats, r, n)


def _accumulate_nonfinite(stats: _Stats, r: Any, n: Any, tol: Tolerance | None) -> None:
    import torch

    same = (r == n) | (torch.isnan(r) & torch.isnan(n))  # inf == inf, NaN == NaN
    diff = (r - n).abs().masked_fill(same, 0.0)
    stats.worst = max(stats.worst, float(diff.max()))
    if tol is None:
        return
    finite = torch.isfinite(r) & torch.isfinite(n)
    # Where either value is not finite only the same value passes: rtol * inf would let any
    # number stand for an infinity (and -inf for +inf).
    bad = ~same & (~finite | ~(diff <= tol.atol + tol.rtol * r.abs()))
    stats.bad += int(bad.sum())
    count = int(finite.sum())
    if count == 0:
        return
    r_f, d_f = r[finite], diff[finite]
    stats.finite += count
    stats.ref_sq += float(torch.sum(r_f.double() ** 2))
    stats.diff_sq += float(torch.sum(d_f.double() ** 2))
    _extremes(stats, r_f, n[finite])


def _extremes(stats: _Stats, r: Any, n: Any) -> None:
    import torch

    (r_lo, r_hi), (n_lo, n_hi) = torch.aminmax(r), torch.aminmax(n)
    stats.new_min, stats.new_max = min(stats.new_min, float(n_lo)), max(stats.new_max, float(n_hi))
    stats.ref_min, stats.ref_max = min(stats.ref_min, float(r_lo)), max(stats.ref_max, float(r_hi))


def compare_outputs(ref: Any, new: Any, tolerances: dict[str, Tolerance]) -> Comparison:
    """Compare output by output, in chunks of ``CHUNK`` elements on the outputs' device."""
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
        if r.is_complex():  # as pairs of reals: a cast to a real type drops the imaginary part
            r, n = torch.view_as_real(r.detach()), torch.view_as_real(n.detach())
        dtype = str(r.dtype).replace("torch.", "")
        floating = r.is_floating_point()
        tol = tolerances.get(dtype, DEFAULT_TOLERANCES["float32"]) if floating else None
        stats = _Stats()
        flat_r, flat_n = r.detach().reshape(-1), n.detach().to(r.device).reshape(-1)
        compute = _compute_dtype(r.dtype)
        for start in range(0, flat_r.numel(), CHUNK):
            _accumulate(stats, flat_r[start:start + CHUNK].to(compute),
                        flat_n[start:start + CHUNK].to(compute), tol)
        worst = stats.worst
        result.max_abs_diff.append(worst if worst == worst and worst != float("inf") else None)
        if result.incorrect or result.slipped:
            continue
        if tol is None:
            if worst != 0.0:
                result.incorrect = f"output {i}: values differ (max abs diff {worst:.3g}); " \
                                   "exact match needed"
            continue
        if stats.bad:
            result.incorrect = (f"output {i}: {stats.bad} of {r.numel()} values differ beyond "
                                f"atol={tol.atol:g}, rtol={tol.rtol:g} (max abs diff {worst:.3g})")
            continue
        result.slipped = _slipped(i, stats, dtype, tol)
    return result


def _slipped(i: int, stats: _Stats, dtype: str, tol: Tolerance) -> str | None:
    if not stats.finite:
        return None
    if stats.finite > 1 and stats.new_max == stats.new_min and stats.ref_max > stats.ref_min:
        return f"output {i} is constant ({stats.new_min:.3g}) where the reference's is not"
    bound = REL_L2_BOUND.get(dtype, REL_L2_BOUND["float32"])
    floor = ZERO_SHARE_OF_ATOL * tol.atol * math.sqrt(stats.finite)
    rel = math.sqrt(stats.diff_sq) / max(math.sqrt(stats.ref_sq), floor, 1e-300)
    if rel > bound:
        return (f"output {i} passes the tolerance only because its values are tiny: "
                f"relative L2 error {rel:.3g} (bound {bound:g})")
    return None


def merge_worst(worst: list[float | None], diffs: list[float | None]) -> list[float | None]:
    """Per-output maximum over trials (None, a non-finite difference, wins)."""
    if not worst:
        return list(diffs)
    return [None if a is None or b is None else max(a, b)
            for a, b in zip(worst, diffs, strict=False)]
