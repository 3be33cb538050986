"""The evaluation result: the one schema printed by ``kbtool eval --json`` and stored by runs.

``EvalResult`` holds what every task kind reports; a kind adds its own fields (its
``details_model``: ``max_abs_diff`` and ``sizes`` for KernelBench, test counts for repository
tasks) as further top-level keys, validated by that model when the result is made.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1


class Status(str, Enum):
    ok = "ok"
    incorrect = "incorrect"
    compile_error = "compile_error"
    runtime_error = "runtime_error"
    timeout = "timeout"
    rejected = "rejected"
    # kbtool itself failed while judging (a judge's own exception): not the candidate's
    # verdict, never fed back to the model as its error, never counted as its failure.
    internal_error = "internal_error"


class TimingStats(BaseModel):
    """Summary of one timing measurement (milliseconds)."""

    timer: str
    trials: int
    mean_ms: float
    median_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    ci95_low_ms: float = Field(description="95% confidence interval of the median")
    ci95_high_ms: float
    stop_reason: str = Field(description="'converged', 'time_cap', 'max_trials', or "
                                         "'few_trials' (fewer than min_trials: too slow)")


class BaselineSpeedup(BaseModel):
    """A candidate's speedup against one baseline (``EvalResult.speedups``)."""

    baseline_ms: float | None = Field(None, description="the reference's median under this "
                                      "baseline, as the speedup compared with")
    speedup: float = Field(description="reference time / candidate time")
    speedup_ci: list[float] | None = Field(
        None, description="[low, high]: the speedup's 95% confidence interval")
    significant: bool | None = Field(None, description="the interval lies above 1")
    speedup_from: Literal["paired", "cached"] = Field(
        description="'paired': timed in alternation with the candidate, in the same rounds; "
                    "'cached': the baseline was timed apart (its own interval combined with "
                    "the candidate's)")

    @classmethod
    def cached(cls, base: TimingStats, timing: TimingStats) -> BaselineSpeedup:
        """Against a baseline timed apart: the ratio of the medians, and the interval of the
        ratio of the two medians' intervals (the baseline's own noise and the candidate's
        both in it; wider than a paired interval, as it should be)."""
        speedup = base.median_ms / timing.median_ms
        ci = None
        if base.ci95_low_ms > 0 and timing.ci95_low_ms > 0:
            ci = [min(speedup, base.ci95_low_ms / timing.ci95_high_ms),
                  max(speedup, base.ci95_high_ms / timing.ci95_low_ms)]
        return cls(baseline_ms=base.median_ms, speedup=speedup, speedup_ci=ci,
                   significant=ci[0] > 1.0 if ci else None, speedup_from="cached")

    @field_validator("speedup_ci")
    @classmethod
    def _two_bounds(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and (len(value) != 2 or value[0] > value[1]):
            raise ValueError("speedup_ci must be [low, high] with low <= high")
        return value


class EvalResult(BaseModel):
    # The task kind's details ride along as extra fields (see the module docstring).
    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    task: str
    # Results written before kinds were named are KernelBench's.
    kind: str = "kernelbench"
    solution: str | None
    device: str
    mode: str | None = Field(None, description="the baseline the speedup is against")
    timer: str | None = None
    status: Status
    correct: bool | None = Field(False, description="null: no correctness check ran (a "
                                                   "baseline timed as a candidate)")
    runtime_ms: float | None = Field(None, description="median of the candidate's timed trials")
    baseline_ms: float | None = Field(None, description="median of the reference under `mode`")
    speedup: float | None = Field(None, description="reference time / candidate time; null "
                                  "unless correct")
    speedup_ci: list[float] | None = Field(
        None, description="[low, high]: the speedup's 95% confidence interval")
    significant: bool | None = Field(
        None, description="the interval lies above 1: faster, beyond the noise (an interval "
                          "that contains 1 does not count as faster)")
    speedup_from: str | None = Field(
        None, description="'paired' (reference and candidate timed in alternation) or "
                          "'cached' (against the cached baseline: asked for, or all the kind "
                          "allows)")
    speedups: dict[str, BaselineSpeedup] = Field(
        default_factory=dict, description="per baseline: the speedup against it (the one "
        "under `mode` repeats speedup, speedup_ci, significant, speedup_from, baseline_ms)")
    noisy: bool = Field(False, description="the timing could not overcome the machine's "
                                           "noise: its interval did not reach the target")
    noise: dict[str, Any] | None = Field(None, description="what the machine was doing "
                                         "while it was timed (kbtool.timing.noise.Noise)")
    error: str | None = None
    flags: list[str] = Field(default_factory=list, description="soft integrity signs")
    findings: list[str] = Field(default_factory=list, description="what each flag is about")
    remeasured: dict[str, float] | None = Field(
        None, description="side-by-side re-measurement after a large speedup")
    timing: TimingStats | None = None
    baseline: TimingStats | None = None
    correctness_trials: int = 0
    stage_s: dict[str, float] = Field(default_factory=dict, description="wall seconds per stage")
    sandbox: list[str] = Field(default_factory=list, description="confinement that applied")
    env: dict[str, Any] = Field(default_factory=dict)
