"""kbtool.timing.compare: paired ratios, their intervals, outliers, the adaptive loop."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kbtool.timing.compare import (
    MIN_STRATUM,
    Rounds,
    StopRule,
    iqr_keep,
    mann_whitney_faster,
    paired_ratio,
    places,
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


def order_effect(rng: np.random.Generator, n: int, effect: float = 0.05,
                 noise: float = 0.01) -> np.ndarray:
    """Log ratios of a null comparison in which the arm that opens a round is ``effect``
    faster: the signs alternate with the rotation."""
    return np.array([effect if i % 2 else -effect for i in range(n)]) + rng.normal(0, noise, n)


def test_an_order_effect_leaves_the_estimate_and_the_width() -> None:
    rng = np.random.default_rng(7)
    logs = order_effect(rng, 9, noise=0.002)  # the first place holds a round more
    plain = ratio_from_logs(logs)
    balanced = ratio_from_logs(logs, positions=places(9, 2))
    # the plain mean leans by 0.05 / 9 towards the first place
    assert abs(math.log(balanced.estimate)) < 0.002 and abs(math.log(plain.estimate)) > 0.004
    assert balanced.rel_halfwidth < plain.rel_halfwidth / 3
    assert balanced.low < 1.0 < balanced.high


def test_balanced_nulls_are_rarely_significant() -> None:
    """Order effect and heavy tails, 8 rounds (4 per place): at most ~2.5% false "faster"
    verdicts by design, as without the stratification."""
    rng = np.random.default_rng(8)
    false = 0
    for _ in range(200):
        logs = order_effect(rng, 8, noise=0.0) + rng.normal(0, 0.05, 8) \
            + rng.standard_t(3, 8) * 0.02
        false += ratio_from_logs(logs, resamples=500, positions=places(8, 2)).significant_faster
    assert false / 200 <= 0.05


def test_too_few_rounds_per_place_are_not_stratified() -> None:
    rng = np.random.default_rng(9)
    n = 2 * MIN_STRATUM - 1  # one place short
    logs = order_effect(rng, n)
    assert ratio_from_logs(logs, positions=places(n, 2)) == ratio_from_logs(logs)
    with pytest.raises(ValueError, match="positions"):
        ratio_from_logs(logs, positions=[0, 1])


def test_rounds_are_compared_by_their_places_in_the_rotation() -> None:
    rng = np.random.default_rng(10)
    logs = order_effect(rng, 12)
    rounds = Rounds([{"a": float(np.exp(x)), "b": 1.0} for x in logs], "converged", 1.0)
    rule = StopRule()
    got, want = rounds.ratio("a", "b", rule), ratio_from_logs(logs, positions=places(12, 2))
    assert (got.estimate, got.low, got.high) == pytest.approx((want.estimate, want.low, want.high))
    assert got.rel_halfwidth < ratio_from_logs(logs).rel_halfwidth / 3
