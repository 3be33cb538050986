"""Summary statistics of timing samples.

The reported runtime is the median (robust to the scheduler hiccups every machine has), so
the confidence interval is the distribution-free 95% interval of the median: order
statistics at ranks n/2 -/+ 1.96*sqrt(n)/2.
"""

from __future__ import annotations

import math
import statistics


def median_ci95(sorted_samples: list[float]) -> tuple[float, float]:
    n = len(sorted_samples)
    if n < 6:  # too few samples for the interval to exclude the extremes
        return sorted_samples[0], sorted_samples[-1]
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half))
    hi = min(n - 1, math.ceil(n / 2 + half) - 1)
    return sorted_samples[lo], sorted_samples[hi]


def relative_ci_halfwidth(samples: list[float]) -> float:
    """Half the width of the median's 95% CI, relative to the median."""
    ordered = sorted(samples)
    lo, hi = median_ci95(ordered)
    median = statistics.median(ordered)
    return (hi - lo) / 2 / median if median > 0 else math.inf


def summarize(samples: list[float]) -> dict[str, float | int]:
    """Mean, median, std, min, max, trials and the 95% CI of the median (ms)."""
    if not samples:
        raise ValueError("no timing samples")
    ordered = sorted(samples)
    lo, hi = median_ci95(ordered)
    return {
        "trials": len(samples),
        "mean_ms": statistics.fmean(samples),
        "median_ms": statistics.median(ordered),
        "std_ms": statistics.stdev(samples) if len(samples) > 1 else 0.0,
        "min_ms": ordered[0],
        "max_ms": ordered[-1],
        "ci95_low_ms": lo,
        "ci95_high_ms": hi,
    }
