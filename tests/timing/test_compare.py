"""kbtool.timing.compare: paired ratios, their intervals, outliers, the adaptive loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kbtool.timing.compare import (
    StopRule,
    iqr_keep,
    mann_whitney_faster,
    paired_ratio,
    ratio_from_logs,
    rotation,
    run_rounds,
)


def noisy_pairs(rng: np.random.Generator, n: int, true_ratio: float, noise: float = 0.05,
                drift: bool = False) -> tuple[list[float], list[float]]:
    """Times of a reference and a candidate ``true_ratio`` times faster, with per-run noise
    and (optionally) a machine that slows down over the rounds by up to 3x."""
    load = np.linspace(1.0, 3.0, n) if drift else np.ones(n)
    ref = 100.0 * load * np.exp(rng.normal(0, noise, n))
    cand = 100.0 / true_ratio * load * np.exp(rng.normal(0, noise, n))
    return list(ref), list(cand)


def test_iqr_keep_drops_only_far_values() -> None:
    values = [10, 11, 10.5, 9.8, 10.2, 10.1, 55.0]
    assert list(iqr_keep(values)) == [True] * 6 + [False]
    assert iqr_keep([1, 100, 1000]).all()  # too few to fence
    assert iqr_keep(values, k=0).all()


def test_ratio_and_interval_hold_the_truth() -> None:
    rng = np.random.default_rng(1)
    ref, cand = noisy_pairs(rng, 20, 1.5)
    ratio = paired_ratio(ref, cand)
    assert ratio.low < 1.5 < ratio.high
    assert ratio.significant_faster and not ratio.significant_slower
    assert 0 < ratio.rel_halfwidth < 0.1
    slower = paired_ratio(cand, ref)
    assert slower.significant_slower and math.isclose(slower.estimate, 1 / ratio.estimate)


def test_pairing_cancels_a_drifting_machine() -> None:
    """The machine slows down 3x over the rounds: the paired ratio stays tight and right,
    while the unpaired test, which ignores the pairing, cannot tell the sides apart."""
    rng = np.random.default_rng(2)
    ref, cand = noisy_pairs(rng, 16, 1.2, noise=0.03, drift=True)
    ratio = paired_ratio(ref, cand)
    assert ratio.low < 1.2 < ratio.high and ratio.significant_faster
    assert mann_whitney_faster(ref, cand) > 0.05


def test_an_outlier_round_is_dropped() -> None:
    rng = np.random.default_rng(3)
    ref, cand = noisy_pairs(rng, 12, 1.0, noise=0.02)
    ref[4] *= 5  # one run hit by a burst of load
    ratio = paired_ratio(ref, cand)
    assert ratio.dropped == 1 and ratio.rounds == 11
    assert 0.95 < ratio.estimate < 1.05 and not ratio.significant_faster


def test_the_null_is_rarely_significant() -> None:
    """Same code on both sides (true ratio 1): at most ~2.5% false "faster" verdicts is the
    design (a 95% two-sided interval); 200 trials at 8 rounds, heavy-tailed noise."""
    rng = np.random.default_rng(4)
    false = 0
    for _ in range(200):
        noise = rng.normal(0, 0.05, 8) + rng.standard_t(3, 8) * 0.02
        false += ratio_from_logs(noise - (rng.normal(0, 0.05, 8) + rng.standard_t(3, 8) * 0.02),
                                 resamples=500).significant_faster
    assert false / 200 <= 0.05


def test_degenerate_inputs() -> None:
    assert paired_ratio([2.0, 2.0, 2.0], [1.0, 1.0, 1.0]).low == pytest.approx(2.0)
    two = paired_ratio([2.0, 2.1], [1.0, 1.0])
    assert two.low == 0.0 and math.isinf(two.high) and not two.significant_faster
    with pytest.raises(ValueError, match="differ in length"):
        paired_ratio([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        paired_ratio([1.0, 0.0], [1.0, 2.0])


def test_mann_whitney_one_sided() -> None:
    rng = np.random.default_rng(5)
    ref, cand = noisy_pairs(rng, 20, 1.3)
    assert mann_whitney_faster(ref, cand) < 0.01
    assert mann_whitney_faster(cand, ref) > 0.9


def test_rotation() -> None:
    assert [rotation("ABC", i) for i in range(4)] == [
        ["A", "B", "C"], ["B", "C", "A"], ["C", "A", "B"], ["A", "B", "C"]]


def test_run_rounds_stops_when_tight_or_at_a_cap() -> None:
    rng = np.random.default_rng(6)

    def quiet(_: int) -> dict[str, float]:
        return {"a": float(100 * np.exp(rng.normal(0, 0.005))),
                "b": float(50 * np.exp(rng.normal(0, 0.005)))}

    rule = StopRule(min_rounds=5, max_rounds=30, target_rel_ci=0.02)
    done = run_rounds(quiet, [("a", "b")], rule)
    assert done.stop_reason == "converged" and len(done.times) == 5
    assert done.ratio("a", "b", rule).estimate == pytest.approx(2.0, rel=0.02)

    def loud(_: int) -> dict[str, float]:
        return {"a": float(100 * np.exp(rng.normal(0, 0.5))), "b": 100.0}

    assert run_rounds(loud, [("a", "b")], rule).stop_reason == "max_rounds"
    ticks = iter(range(1000))
    capped = run_rounds(loud, [("a", "b")], StopRule(min_rounds=5, max_rounds=30,
                                                      target_rel_ci=0.02, max_s=6),
                        clock=lambda: float(next(ticks)))
    # the clock is read at the start and once a round from min_rounds on: 6 s at round 10
    assert capped.stop_reason == "time_cap" and len(capped.times) == 10
