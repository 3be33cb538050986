"""What the machine was doing while something was timed, and whether the noise won.

On a shared machine other work takes CPUs away from a measurement: multi-threaded ops then
wait for a thread the host has descheduled and take whole scheduler ticks.  So a measurement
(1) asks how many threads the machine can give it now (:func:`usable_threads`), and (2) says
afterwards what it saw (:func:`assess`): the load, the CPU steal a hypervisor reports, how
much of its wall time the measured processes actually ran, and samples that fall in several
clusters (ticks).  A measurement whose interval did not reach its target is ``noisy``: its
numbers stand, with their interval, but nothing is cached from it.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field


@dataclass(frozen=True)
class MachineState:
    load_1min: float | None
    steal_ticks: int | None
    total_ticks: int | None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def machine_state() -> MachineState:
    try:
        load: float | None = os.getloadavg()[0]
    except OSError:
        load = None
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return MachineState(load, None, None)
    return MachineState(load, fields[7] if len(fields) > 7 else 0, sum(fields[:8]))


def _running() -> int | None:
    """Tasks runnable right now on the whole machine, this one not counted."""
    try:
        return max(0, int(Path("/proc/loadavg").read_text().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return None


def usable_threads(default: int, samples: int = 5, interval_s: float = 0.004) -> int:
    """The threads a CPU measurement should use now: ``default``, or fewer when other work
    keeps CPUs busy (a thread the machine cannot give costs a scheduler tick per op)."""
    seen = []
    for i in range(samples):
        running = _running()
        if running is None:
            return default
        seen.append(running)
        if i + 1 < samples:
            time.sleep(interval_s)
    free = cpu_count() - statistics.median(seen)
    return max(1, min(default, math.floor(free + 0.5)))


def bimodal(samples: list[float]) -> bool:
    """Whether times fall into separate clusters (Sarle's bimodality coefficient of their
    logs above 5/9, the value of a uniform distribution)."""
    import numpy as np
    from scipy import stats  # type: ignore[import-untyped]

    n = len(samples)
    x = np.log(np.asarray([s for s in samples if s > 0], dtype=float))
    if n < 8 or len(x) < n or float(np.ptp(x)) == 0.0:
        return False
    skew = float(stats.skew(x, bias=False))
    kurt = float(stats.kurtosis(x, bias=False))
    coefficient = (skew ** 2 + 1) / (kurt + 3 * (n - 1) ** 2 / ((n - 2) * (n - 3)))
    return coefficient > 5 / 9


class Noise(BaseModel):
    """What a measurement saw of the machine (``noise`` in a result)."""

    noisy: bool = Field(description="the interval did not reach its target: the machine's "
                                    "noise won; nothing is cached from this measurement")
    reasons: list[str] = Field(default_factory=list, description="what was seen, in words")
    cpus: int
    threads: int | None = Field(None, description="threads each measured process used")
    load_1min: float | None = None
    steal: float | None = Field(None, description="share of CPU time the hypervisor took")
    cpu_per_wall: dict[str, float] = Field(
        default_factory=dict, description="per measured side: CPU seconds per wall second "
                                          "inside its timed windows")
    bimodal: list[str] = Field(default_factory=list, description="sides whose times cluster")


def assess(before: MachineState, after: MachineState, *, converged: bool, why: str,
           busy: dict[str, tuple[float, float]], samples: dict[str, list[float]],
           threads: int | None) -> Noise:
    """``why``: what the measurement reached (its interval, rounds, stop reason); ``busy``:
    side -> (CPU seconds, wall seconds) inside its windows; ``samples``: side -> times."""
    cpus = cpu_count()
    loads = [v for v in (before.load_1min, after.load_1min) if v is not None]
    load = max(loads) if loads else None
    steal = None
    if None not in (before.steal_ticks, before.total_ticks, after.steal_ticks,
                    after.total_ticks):
        total = after.total_ticks - before.total_ticks  # type: ignore[operator]
        if total > 0:
            steal = (after.steal_ticks - before.steal_ticks) / total  # type: ignore[operator]
    ratios = {side: cpu / wall for side, (cpu, wall) in busy.items() if wall > 0 and cpu > 0}
    clustered = [side for side, times in samples.items() if bimodal(times)]
    reasons = [] if converged else [why]
    if load is not None and load > cpus:
        reasons.append(f"load {load:.1f} on {cpus} CPUs")
    if steal is not None and steal > 0.02:
        reasons.append(f"{steal:.0%} of CPU time stolen by the hypervisor")
    starved = {s: r for s, r in ratios.items() if r < 0.75}
    if starved:
        reasons.append("ran " + ", ".join(f"{r:.0%} of its window time ({s})"
                                          for s, r in starved.items()))
    if clustered:
        reasons.append(f"times in separate clusters ({', '.join(clustered)})")
    return Noise(noisy=not converged, reasons=reasons, cpus=cpus, threads=threads,
                 load_1min=load, steal=steal,
                 cpu_per_wall={s: round(r, 3) for s, r in ratios.items()}, bimodal=clustered)
