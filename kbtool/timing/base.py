"""Timing backends: the interface and the adaptive measurement loop they share.

A timer measures ``fn`` (one forward pass) repeatedly.  Instead of a fixed multi-second
budget, the loop stops as soon as the 95% confidence interval of the median is within
``target_rel_ci`` of the median (after ``min_trials``), or at ``max_trials`` / ``max_timing_s``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kbtool.timing.stats import relative_ci_halfwidth, summarize

if TYPE_CHECKING:
    from kbtool.evaluation.result import TimingStats

# Past max_timing_s, trials go on until min_trials, for at most this many times longer.
HARD_CAP_FACTOR = 5


@dataclass(frozen=True)
class TimingSettings:
    """How long to measure: the loop stops when the CI is tight (after ``min_trials``), at
    ``max_trials``, or at ``max_timing_s`` once ``min_trials`` are done."""

    warmup_trials: int = 3
    min_trials: int = 10
    max_trials: int = 1000
    target_rel_ci: float = 0.01
    max_timing_s: float = 2.0

    @classmethod
    def from_config(cls, config: Any) -> TimingSettings:
        return cls(**{f: getattr(config, f) for f in cls.__dataclass_fields__})


class Timer:
    """Base class of timing backends.  Subclasses implement :meth:`trial`."""

    name: str = ""
    devices: tuple[str, ...] = ("cpu",)
    description: str = ""

    def available(self, device: str) -> str | None:
        """None when usable on ``device``; else the reason it is not."""
        if device not in self.devices:
            return f"timer {self.name!r} works on {', '.join(self.devices)}, not {device}"
        return None

    def setup(self, device: str) -> None:
        """Called once in the measuring process before any trial."""

    def trial(self, fn: Callable[[], Any]) -> float:
        """Run ``fn`` once and return its time in milliseconds, all its work included."""
        raise NotImplementedError

    def before_window(self) -> None:
        """In the measuring process, before a window of calls another process times (a
        judge's clock around a runner's calls), outside it: e.g. flush the L2 cache."""

    def sync(self) -> None:
        """Wait until all work launched so far is done, on every stream of the device (the
        end of a timed window)."""

    def measure(self, fn: Callable[[], Any], settings: TimingSettings) -> TimingStats:
        from kbtool.evaluation.result import TimingStats

        for _ in range(settings.warmup_trials):
            self.trial(fn)
        samples, reason = adaptive(lambda: self.trial(fn), settings)
        return TimingStats(timer=self.name, stop_reason=reason, **summarize(samples))


def adaptive(trial: Callable[[], float], settings: TimingSettings) -> tuple[list[float], str]:
    """Times from ``trial()`` until the median's CI is tight or a cap is hit; the samples and
    the stop reason."""
    samples: list[float] = []
    start = time.perf_counter()
    reason = "max_trials"
    while len(samples) < settings.max_trials:
        samples.append(trial())
        n = len(samples)
        # Checking costs a sort: do it every 10 trials, not after each one.
        check = n >= settings.min_trials and (n == settings.min_trials or n % 10 == 0)
        if check and relative_ci_halfwidth(samples) <= settings.target_rel_ci:
            reason = "converged"
            break
        elapsed = time.perf_counter() - start
        if elapsed >= settings.max_timing_s and n >= settings.min_trials:
            reason = "time_cap"
            break
        # min_trials is a promise, kept past the time cap up to a hard one; a call so
        # slow that even that is not enough says so in its stop reason.
        if elapsed >= HARD_CAP_FACTOR * settings.max_timing_s and n >= 2:
            reason = "few_trials"
            break
    return samples, reason
