"""The summary rule: which candidate of a task is its best, and its speedups.

One rule, used by the search when it writes ``summary.json``, by ``kbtool report`` when it
rebuilds a summary from a crashed run, and by ``kbtool monitor`` as events arrive:

- a candidate counts when its status is ``ok``;
- the best is the counted candidate with the lowest runtime (the first one among equals);
  for kinds whose candidates are not timed, the first counted one;
- against each baseline, its speedup is the one its evaluation reported
  (``EvalResult.speedups``): ``paired`` (the reference timed under that baseline in the
  same rounds as the candidate) or ``cached`` (the baseline timed apart; its own interval
  is in the speedup's), with that interval and source, and that baseline's time is the one
  it was compared with; a speedup is never made here by dividing a baseline timed apart by
  a runtime timed in the pairs;
- results written before evaluations reported ``speedups`` have their own speedup against
  ``mode``; against another baseline, that baseline's time / their runtime, labelled
  ``cached``, with an interval as wide (relatively) as their own speedup's;
- a speedup counts as faster only when its interval lies above 1 (:func:`faster`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class Against:
    """A speedup against one baseline, as the rule reports it."""

    speedup: float
    ci: tuple[float, float] | None = None   # its 95% interval
    source: str | None = None               # "paired", "cached" (None: not recorded)
    baseline_ms: float | None = None        # the baseline's time it was compared with


def against_each(speedups: Any) -> dict[str, Against]:
    """``EvalResult.speedups`` (its models, or the dicts an event or a file holds) as the
    rule reads them; malformed entries are left out."""
    found: dict[str, Against] = {}
    if not isinstance(speedups, Mapping):
        return found
    for name, entry in speedups.items():
        data = entry.model_dump() if hasattr(entry, "model_dump") else entry
        value = finite(data.get("speedup")) if isinstance(data, Mapping) else None
        if value is None:
            continue
        source = data.get("speedup_from")
        found[str(name)] = Against(value, interval(data.get("speedup_ci")),
                                   source if isinstance(source, str) else None,
                                   finite(data.get("baseline_ms")))
    return found


@dataclass(frozen=True)
class Attempt:
    """A candidate as the rule sees it."""

    phase: int
    status: str
    runtime_ms: float | None = None
    speedup: float | None = None
    baseline_ms: float | None = None   # the baseline it was compared with
    flags: tuple[str, ...] = ()
    solution: str | None = None        # its file, relative to the run directory
    speedup_ci: tuple[float, float] | None = None  # the 95% interval of ``speedup``
    speedup_from: str | None = None    # how ``speedup`` was timed: paired or cached
    # against each baseline (``against_each``); empty in results from before it existed
    speedups: Mapping[str, Against] = field(default_factory=dict, hash=False)

    @property
    def counts(self) -> bool:
        return self.status == "ok"

    @property
    def timed(self) -> bool:
        return self.counts and finite(self.runtime_ms) is not None


def finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def better(new: Attempt, old: Attempt | None) -> bool:
    """Whether ``new`` replaces ``old`` as the best (``old`` came first)."""
    if not new.counts:
        return False
    if old is None:
        return True
    if not new.timed:
        return False
    return not old.timed or new.runtime_ms < old.runtime_ms  # type: ignore[operator]


def best_of(attempts: Iterable[Attempt]) -> Attempt | None:
    best = None
    for attempt in attempts:
        if better(attempt, best):
            best = attempt
    return best


def compared_baselines(best: Attempt | None, baselines_ms: dict[str, float],
                       mode: str | None) -> dict[str, float]:
    """The baselines' times, each as the best candidate was compared with (the reference's
    time in its pairs, where it was paired)."""
    out = dict(baselines_ms)
    if best is None:
        return out
    for name in dict.fromkeys([*out, *best.speedups]):
        found = speedup_against(best, name, baselines_ms, mode)
        if found is not None and found.baseline_ms is not None:
            out[name] = found.baseline_ms
    return out


def interval(value: Any) -> tuple[float, float] | None:
    """``value`` as a (low, high) interval of finite numbers, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        return None
    low, high = finite(value[0]), finite(value[1])
    return (low, high) if low is not None and high is not None and low <= high else None


def speedup_against(best: Attempt | None, baseline: str, baselines_ms: dict[str, float],
                    mode: str | None) -> Against | None:
    """The best candidate's speedup against ``baseline`` (None: none)."""
    if best is None or not best.timed:
        return None
    if best.speedups:  # what its evaluation reported, and nothing else
        return best.speedups.get(baseline)
    own, ci = finite(best.speedup), interval(best.speedup_ci)
    if baseline == mode and own is not None:
        return Against(own, ci, best.speedup_from, finite(best.baseline_ms))
    ms = finite(baselines_ms.get(baseline))
    if not ms or not best.runtime_ms:
        return None
    value = ms / best.runtime_ms
    scaled = (value * ci[0] / own, value * ci[1] / own) if own and ci else None
    return Against(value, scaled, "cached", ms)


def faster(speedup: float | None, ci: Any, than: float = 1.0) -> bool:
    """Whether a speedup counts as more than ``than`` times faster: above it, and (where it
    has an interval) with the interval above 1, so noise is never counted as a gain."""
    if speedup is None or speedup <= than:
        return False
    bounds = interval(ci)
    return bounds is None or bounds[0] > 1.0


class PhaseSummary(BaseModel):
    phase: int
    best_runtime_ms: float | None = None
    correct: int = 0
    # The phase's best candidate against each baseline, as for the task (``speedup_against``).
    speedup: dict[str, float | None] = Field(default_factory=dict)
    speedup_ci: dict[str, list[float] | None] = Field(default_factory=dict)
    speedup_from: dict[str, str | None] = Field(default_factory=dict)


class TaskSummary(BaseModel):
    """One task of ``summary.json``."""

    candidates: int = 0
    correct_candidates: int = 0
    correct: bool = False
    baselines_ms: dict[str, float] = Field(default_factory=dict)
    best_solution: str | None = None
    best_runtime_ms: float | None = None
    speedup: dict[str, float | None] = Field(default_factory=dict)
    speedup_ci: dict[str, list[float] | None] = Field(
        default_factory=dict, description="per baseline, the speedup's 95% interval")
    speedup_from: dict[str, str | None] = Field(
        default_factory=dict, description="per baseline, how the speedup was timed: 'paired' "
                                          "(in the candidate's rounds) or 'cached' (apart)")
    flags: list[str] = Field(default_factory=list)
    statuses: dict[str, int] = Field(default_factory=dict)
    phases: list[PhaseSummary] = Field(default_factory=list)


class RunSummary(BaseModel):
    """``summary.json``."""

    status: str
    model: str | None = None
    strategy: str | None = None
    budget: str | None = None
    mode: str | None = None
    baselines: list[str] = Field(default_factory=list)
    tasks: dict[str, TaskSummary] = Field(default_factory=dict)
    totals: dict[str, Any] = Field(default_factory=dict)


def summarize_task(attempts: list[Attempt], baselines_ms: dict[str, float],
                   mode: str | None) -> TaskSummary:
    best = best_of(attempts)
    compared = compared_baselines(best, baselines_ms, mode)
    statuses: dict[str, int] = {}
    for attempt in attempts:
        statuses[attempt.status] = statuses.get(attempt.status, 0) + 1

    def against_all(candidate: Attempt | None) -> dict[str, dict[str, Any]]:
        """The candidate's speedup, interval and source, per baseline."""
        names = list(compared)
        if candidate is not None and candidate.timed and mode is not None and mode not in names:
            names.append(mode)  # its own, where the baseline was not timed apart
        found = {b: speedup_against(candidate, b, baselines_ms, mode) for b in names}
        return {"speedup": {b: x.speedup if x else None for b, x in found.items()},
                "speedup_ci": {b: list(x.ci) if x and x.ci else None for b, x in found.items()},
                "speedup_from": {b: x.source if x else None for b, x in found.items()}}

    phases = []
    for phase in range(max((a.phase for a in attempts), default=-1) + 1):
        in_phase = [a for a in attempts if a.phase == phase]
        phase_best = best_of(in_phase)
        phases.append(PhaseSummary(
            phase=phase, correct=sum(a.counts for a in in_phase),
            best_runtime_ms=phase_best.runtime_ms if phase_best and phase_best.timed else None,
            **against_all(phase_best)))
    return TaskSummary(
        candidates=len(attempts), correct_candidates=sum(a.counts for a in attempts),
        correct=best is not None, baselines_ms=compared,
        best_solution=best.solution if best else None,
        best_runtime_ms=best.runtime_ms if best and best.timed else None,
        **against_all(best), flags=list(best.flags) if best else [], statuses=statuses,
        phases=phases)
