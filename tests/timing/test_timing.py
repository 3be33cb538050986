"""Statistics and the adaptive timing loop."""

from __future__ import annotations

import statistics
import time

import pytest

from kbtool.timing.base import Timer, TimingSettings
from kbtool.timing.stats import median_ci95, relative_ci_halfwidth, summarize
from kbtool_plugins.timers import CpuTimer


def test_summarize_known_values() -> None:
    stats = summarize([4.0, 1.0, 3.0, 2.0])
    assert stats["median_ms"] == 2.5 and stats["mean_ms"] == 2.5
    assert stats["min_ms"] == 1.0 and stats["max_ms"] == 4.0 and stats["trials"] == 4
    assert stats["std_ms"] == pytest.approx(statistics.stdev([1, 2, 3, 4]))
    assert (stats["ci95_low_ms"], stats["ci95_high_ms"]) == (1.0, 4.0)  # n < 6: the range


def test_median_ci_uses_order_statistics() -> None:
    samples = [float(i) for i in range(100)]
    lo, hi = median_ci95(samples)
    # ranks 50 -/+ 9.8: the 40th and 59th smallest values
    assert (lo, hi) == (40.0, 59.0)
    assert lo <= statistics.median(samples) <= hi


class ScriptedTimer(Timer):
    """Returns given durations instead of measuring: the loop's stopping rules in isolation."""

    name = "scripted"

    def __init__(self, values) -> None:
        self.values = iter(values)
        self.calls = 0

    def trial(self, fn) -> float:
        self.calls += 1
        return next(self.values)


def test_loop_stops_when_the_interval_is_tight() -> None:
    timer = ScriptedTimer([1.0] * 10_000)
    stats = timer.measure(lambda: None, TimingSettings(warmup_trials=2, min_trials=10))
    assert stats.stop_reason == "converged" and stats.trials == 10
    assert timer.calls == 12  # warm-up trials are run and discarded


def test_loop_runs_longer_for_noisy_samples() -> None:
    noisy = [1.0 if i % 2 else 3.0 for i in range(10_000)]
    stats = ScriptedTimer(noisy).measure(lambda: None, TimingSettings(max_trials=200))
    assert stats.stop_reason == "max_trials" and stats.trials == 200
    assert relative_ci_halfwidth(noisy[:200]) > 0.01


def test_loop_respects_the_time_cap() -> None:
    timer = CpuTimer()
    timer.setup("cpu")
    stats = timer.measure(lambda: time.sleep(0.01),
                               TimingSettings(warmup_trials=0, target_rel_ci=1e-9,
                                              max_timing_s=0.1))
    assert stats.stop_reason == "time_cap"
    assert 2 <= stats.trials <= 12  # ~10 at 10 ms each; fewer when the machine is busy


def test_min_trials_is_kept_past_the_time_cap() -> None:
    """A slow call once stopped the loop after 2 trials, whatever min_trials said."""
    timer = CpuTimer()
    timer.setup("cpu")
    stats = timer.measure(lambda: time.sleep(0.03),
                          TimingSettings(warmup_trials=0, min_trials=6, target_rel_ci=1e-9,
                                         max_timing_s=0.05))
    assert stats.trials >= 6 and stats.stop_reason == "time_cap"


def test_a_call_too_slow_for_min_trials_says_so() -> None:
    timer = CpuTimer()
    timer.setup("cpu")
    stats = timer.measure(lambda: time.sleep(0.05),
                          TimingSettings(warmup_trials=0, min_trials=50, target_rel_ci=1e-9,
                                         max_timing_s=0.02))
    assert stats.stop_reason == "few_trials" and 2 <= stats.trials < 50


def test_cpu_timer_measures_real_time() -> None:
    timer = CpuTimer()
    timer.setup("cpu")
    stats = timer.measure(lambda: time.sleep(0.005), TimingSettings(min_trials=5, max_timing_s=0.5))
    assert 5.0 <= stats.median_ms < 15.0
    assert stats.timer == "cpu"


def test_gpu_timers_refuse_the_cpu() -> None:
    from kbtool_plugins.timers import CudaEventTimer, TritonDoBenchTimer

    assert "cuda" in (CudaEventTimer().available("cpu") or "")
    assert TritonDoBenchTimer().available("cpu") is not None
    assert CpuTimer().available("cpu") is None
