"""Helpers the benchmarks share (run them as ``python bench/NAME.py``)."""

from __future__ import annotations

import argparse
import math
from typing import Any

SMOKE_HELP = ("a small run (seconds) that only checks the benchmark still works: CI runs every "
              "benchmark so (bench/smoke.py); its figures mean nothing")


def add_smoke(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


def apply_smoke(args: argparse.Namespace, **small: Any) -> argparse.Namespace:
    """With ``--smoke``, ``small`` replaces the sizes given (or defaulted)."""
    if args.smoke:
        for name, value in small.items():
            setattr(args, name, value)
    return args


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100), as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else format(value, spec)


def json_safe(obj: Any) -> Any:
    """NaN (a figure that could not be measured) as null, so the file is strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
