"""Paired comparison of timings: speed ratios with confidence intervals, outliers, tests.

The design every comparison here assumes: the arms being compared (a reference and one or
more candidates) are timed in alternation, round by round (``ABCABC...``; the order rotates
each round so no arm always runs first), and each round yields one time per arm.  A slow
drift of the machine (another user's job starting, thermal limits) then hits both sides of
a round alike, and the per-round ratio ``reference / candidate`` cancels it; a burst that
hits one run only makes one round an outlier, which the IQR fence drops.

- :func:`paired_ratio`: the ratio (reference time / candidate time, >1 means the candidate
  is faster) as the geometric mean of the per-round ratios (balanced over the rounds' places
  in the rotation, so that an order effect cancels), with a bootstrap confidence interval
  over rounds (a percentile interval widened for small samples, Hesterberg 2015);
  ``significant`` faster means the interval lies above 1.  This is the verdict: the number,
  its interval and the decision come from one computation and can never disagree.
- :func:`mann_whitney_faster`: SWE-Perf's one-sided Mann-Whitney U test on the two sets of
  times (IQR outliers dropped per arm), for comparison with published figures; it ignores the
  pairing, so drift inflates its variance, and it tests "tends to be faster", not by how much.
- :func:`run_rounds`: the adaptive loop: rounds until every compared ratio's interval is
  tight (``target_rel_ci``), or a cap on rounds or seconds is hit.  The stop depends on the
  interval's width only, never on where it lies, so it does not bias the verdict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

# numpy and scipy are imported where they are used: kbtool lists tasks and prints its help
# without paying for them (the task kinds that import this module load with every command).
if TYPE_CHECKING:
    import numpy as np

    # Times or log ratios: a list or a numpy array.
    Samples = Sequence[float] | np.ndarray


def iqr_keep(values: Samples, k: float = 1.5) -> np.ndarray:
    """A mask of the values inside Tukey's fences ``[Q1 - k*IQR, Q3 + k*IQR]`` (all of
    them when fewer than 4: quartiles of three points fence nothing meaningful)."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if len(x) < 4 or k <= 0:
        return np.ones(len(x), dtype=bool)
    q1, q3 = np.percentile(x, [25, 75])
    spread = q3 - q1
    return (x >= q1 - k * spread) & (x <= q3 + k * spread)


@dataclass(frozen=True)
class Ratio:
    """A speed ratio ``reference / candidate`` (>1: the candidate is faster)."""

    estimate: float
    low: float
    high: float
    rounds: int          # rounds used (outliers excluded)
    dropped: int         # rounds dropped as outliers
    confidence: float

    @property
    def significant_faster(self) -> bool:
        return self.low > 1.0

    @property
    def significant_slower(self) -> bool:
        return self.high < 1.0

    @property
    def rel_halfwidth(self) -> float:
        """Half the interval's width on the log scale (0.03: about +-3%)."""
        if self.low <= 0 or not math.isfinite(self.high):
            return math.inf
        return (math.log(self.high) - math.log(self.low)) / 2


def log_ratios(reference: Samples, candidate: Samples) -> np.ndarray:
    """Per-round ``log(reference / candidate)``; both sequences are one time per round."""
    import numpy as np

    ref, cand = np.asarray(reference, dtype=float), np.asarray(candidate, dtype=float)
    if ref.shape != cand.shape:
        raise ValueError(f"paired samples differ in length ({len(ref)} vs {len(cand)})")
    if np.any(ref <= 0) or np.any(cand <= 0):
        raise ValueError("times must be positive")
    return np.log(ref) - np.log(cand)


def fenced_mean(x: np.ndarray, axis: int = -1, k: float = 1.5) -> np.ndarray:
    """The mean of the values inside the IQR fences, along ``axis`` (vectorized)."""
    import numpy as np

    if x.shape[axis] < 4 or k <= 0:
        return np.asarray(x.mean(axis=axis))
    q1, q3 = np.percentile(x, [25, 75], axis=axis, keepdims=True)
    spread = q3 - q1
    inside = (x >= q1 - k * spread) & (x <= q3 + k * spread)
    return np.asarray((x * inside).sum(axis=axis) / inside.sum(axis=axis))


# Rounds per place in the rotation below which a stratified interval is not trusted.
MIN_STRATUM = 4


def mean_interval(values: Samples, confidence: float = 0.95, outlier_k: float = 1.5,
                  resamples: int = 2000, seed: int = 0,
                  positions: Sequence[int] | None = None) -> tuple[float, float, float, int]:
    """``(mean, low, high, dropped)``: the fenced mean of ``values`` (per-round log ratios,
    or per-round differences) and its bootstrap interval, as :func:`ratio_from_logs`
    describes; ``low``/``high`` are -inf/inf when the rounds are too few for one."""
    import numpy as np
    from scipy import stats  # type: ignore[import-untyped]

    x = np.asarray(values, dtype=float)
    if len(x) == 0:
        raise ValueError("no rounds to compare")
    groups = [x]
    if positions is not None:
        places = np.asarray(positions)
        if places.shape != x.shape:
            raise ValueError(f"{len(places)} positions for {len(x)} rounds")
        split = [x[places == p] for p in np.unique(places)]
        if len(split) > 1 and min(len(g) for g in split) >= MIN_STRATUM:
            groups = split
    n, k = len(x), len(groups)
    dropped = sum(int((~iqr_keep(g, outlier_k)).sum()) for g in groups)

    def estimate(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean([fenced_mean(g, axis, outlier_k) for g in samples], axis=0)

    mean = float(estimate(*groups))
    if n - k < 2:  # no interval worth the name
        return mean, -math.inf, math.inf, dropped
    if all(float(np.ptp(g)) == 0.0 for g in groups):
        return mean, mean, mean, dropped
    result = stats.bootstrap(
        tuple(groups), estimate, confidence_level=confidence, n_resamples=resamples,
        method="percentile", vectorized=True, paired=False,
        random_state=np.random.default_rng(seed))
    lo, hi = (float(v) for v in result.confidence_interval)
    # The percentile interval is too narrow for small n (it uses the plug-in variance
    # and the normal quantile); widen it around the estimate by sqrt(n/(n-k)) * t/z.
    alpha = (1 - confidence) / 2
    widen = math.sqrt(n / (n - k)) * stats.t.ppf(1 - alpha, n - k) / \
        stats.norm.ppf(1 - alpha)
    return mean, mean - (mean - lo) * widen, mean + (hi - mean) * widen, dropped


def ratio_from_logs(logs: Samples, confidence: float = 0.95, outlier_k: float = 1.5,
                    resamples: int = 2000, seed: int = 0,
                    positions: Sequence[int] | None = None) -> Ratio:
    """The ratio and its bootstrap interval from per-round log ratios.

    The estimate is the mean of the log ratios inside the IQR fences; the bootstrap
    resamples rounds and fences each resample anew, so the interval includes what dropping
    outliers does to the estimate (fencing once and bootstrapping the rest would make it
    too narrow: 6-8% false "faster" verdicts at 5-8 rounds instead of 2.5%).

    ``positions``: each round's place in the rotation.  An arm's place in a round matters
    (on a CPU the arm that opens a round ran last in the one before, its caches warm: 3-13%
    faster here on ReLU, up to 29% on a small convolution), so the log ratios alternate.
    With every place holding ``MIN_STRATUM`` rounds or more, the estimate is the mean of the
    places' fenced means and the bootstrap resamples within each place: the order effect
    then leaves the estimate even when the places hold unequal numbers of rounds, and leaves
    the interval's width too."""
    n = len(logs)
    mean, lo, hi, dropped = mean_interval(logs, confidence, outlier_k, resamples, seed,
                                          positions)
    return Ratio(math.exp(mean), math.exp(lo), math.exp(hi), n - dropped, dropped, confidence)


def paired_ratio(reference: Samples, candidate: Samples,
                 confidence: float = 0.95, outlier_k: float = 1.5, resamples: int = 2000,
                 seed: int = 0, positions: Sequence[int] | None = None) -> Ratio:
    """``reference / candidate`` from paired, interleaved times (one of each per round;
    ``positions``: see :func:`ratio_from_logs`)."""
    return ratio_from_logs(log_ratios(reference, candidate), confidence, outlier_k,
                           resamples, seed, positions)


def places(rounds: int, arms: int) -> list[int]:
    """Each round's place in the :func:`rotation` of ``arms`` arms."""
    return [i % max(arms, 1) for i in range(rounds)]


def mann_whitney_faster(reference: Samples, candidate: Samples,
                        outlier_k: float = 1.0) -> float:
    """One-sided Mann-Whitney U p-value for "the candidate's times are smaller", after
    dropping each arm's outliers outside ``[Q1 - k*IQR, Q3 + k*IQR]`` (SWE-Perf: k=1,
    significant at p < 0.1)."""
    import numpy as np
    from scipy import stats

    ref = np.asarray(reference, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    ref, cand = ref[iqr_keep(ref, outlier_k)], cand[iqr_keep(cand, outlier_k)]
    if len(ref) == 0 or len(cand) == 0:
        return 1.0
    return float(stats.mannwhitneyu(cand, ref, alternative="less").pvalue)


def rotation(arms: Sequence[str], round_index: int) -> list[str]:
    """The order of the arms in a round: ``ABC``, ``BCA``, ``CAB``, ``ABC``, ..."""
    shift = round_index % len(arms) if arms else 0
    return [*arms[shift:], *arms[:shift]]


@dataclass(frozen=True)
class StopRule:
    # At least 8 rounds: stopping on a tight interval after fewer lets chance-narrow
    # intervals through (about 5% false "faster" verdicts at 5 rounds, 2.5% at 8).
    min_rounds: int = 8
    max_rounds: int = 30
    target_rel_ci: float = 0.03
    max_s: float = 300.0
    confidence: float = 0.95
    outlier_k: float = 1.5


@dataclass
class Rounds:
    """What :func:`run_rounds` measured: one mapping arm -> time per round."""

    times: list[dict[str, float]]
    stop_reason: str                 # "converged", "max_rounds" or "time_cap"
    elapsed_s: float

    def arm(self, name: str) -> list[float]:
        return [r[name] for r in self.times]

    def ratio(self, reference: str, candidate: str, rule: StopRule) -> Ratio:
        arms = len(self.times[0]) if self.times else 1
        return paired_ratio(self.arm(reference), self.arm(candidate), rule.confidence,
                            rule.outlier_k, positions=places(len(self.times), arms))


def run_rounds(run_round: Callable[[int], Mapping[str, float]],
               pairs: Sequence[tuple[str, str]], rule: StopRule,
               clock: Callable[[], float] = time.monotonic,
               converged: Callable[[Rounds], bool] | None = None) -> Rounds:
    """Call ``run_round(i)`` (it times every arm once, in ``rotation`` order, and returns
    arm -> time) until each ``(reference, candidate)`` ratio's interval is within
    ``rule.target_rel_ci`` (or ``converged(rounds so far)``, where given), or
    ``max_rounds`` / ``max_s`` is reached (``min_rounds`` first in any case)."""
    start = clock()
    times: list[dict[str, float]] = []
    reason = "max_rounds"
    while len(times) < rule.max_rounds:
        times.append(dict(run_round(len(times))))
        if len(times) < rule.min_rounds:
            continue
        so_far = Rounds(times, reason, 0.0)
        if converged(so_far) if converged is not None else \
                all(so_far.ratio(a, b, rule).rel_halfwidth <= rule.target_rel_ci
                    for a, b in pairs):
            reason = "converged"
            break
        if clock() - start >= rule.max_s:
            reason = "time_cap"
            break
    return Rounds(times, reason, clock() - start)
