"""Does the "work moved out of the timed region" rule ever reject an honest patch?

For every built-in perf task (or those named), the human patch is the honest candidate:
each trial times baseline and human patch interleaved exactly as a check does (``--rounds``
rounds, every workload, visible and hidden, a fresh process per run, the order rotating),
and applies the check's own decision (``kbtool_plugins.perf.check.moved_work``: the
agent's extra CPU time before ``go`` against what it saves inside the timed region, the
lower end of an interval) to every workload the human patch is significantly faster on.
It prints, per task, how many of ``--trials`` trials the rule rejected the human patch in
(the target: none), and beside it what the earlier rule (the fastest untimed wall times
compared) would have said of the same runs.

    python bench/perf_moved_work.py --trials 100 cache_dir=/path   # hours on a busy 2-core VM
    python bench/perf_moved_work.py --small                        # one trial of one task
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import add_smoke

from kbtool.cli.common import make_config
from kbtool.config import split_overrides
from kbtool.task import catalog
from kbtool.timing.compare import paired_ratio, places, rotation
from kbtool_plugins.perf import releases
from kbtool_plugins.perf.check import ARMS, Check, moved_work
from kbtool_plugins.perf.judge import Run
from kbtool_plugins.perf.workloads import payload_of, task_dir

HONEST = ("baseline", "human")


def wall_rule(base: list[Run], human: list[Run], fraction: float, floor_ms: float) -> bool:
    """The rule before: the fastest untimed wall times compared, one reading each."""
    saved = min(r.experiment_ms for r in base) - min(r.experiment_ms for r in human)
    extra = min(r.untimed_ms for r in human) - min(r.untimed_ms for r in base)
    return saved > 0 and extra > max(fraction * saved, floor_ms)


def trial(check: Check, rounds: int) -> tuple[bool, bool, list[float]]:
    """One trial: (the CPU rule rejected, the wall rule would have, extra CPU ms per
    workload the human patch is significantly faster on)."""
    assert check.bench is not None
    settings = check.settings
    runs: dict[tuple[str, str], list[Run]] = {(w.name, a): [] for w in check.bench.items
                                              for a in HONEST}
    for index in range(rounds):
        seed = secrets.randbits(31)
        for workload in check.bench.items:
            for arm in rotation(HONEST, index):
                runs[(workload.name, arm)].append(check.run_arm(arm, workload, seed))
    rejected = wall = False
    extras = []
    for workload in check.bench.items:
        base, human = runs[(workload.name, "baseline")], runs[(workload.name, "human")]
        clock = (lambda r: r.experiment_cpu_ms) if settings.clock == "cpu" else \
            (lambda r: r.experiment_ms)
        ratio = paired_ratio([clock(r) for r in base], [clock(r) for r in human],
                             settings.confidence, settings.outlier_k,
                             positions=places(rounds, len(ARMS)))
        if not ratio.significant_faster:
            continue
        decision = moved_work(base, human, settings)
        extras.append(decision.extra_ms)
        rejected |= decision.moved
        wall |= wall_rule(base, human, settings.moved_work_fraction,
                          settings.moved_work_floor_ms)
    return rejected, wall, extras


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("args", nargs="*", help="perf task ids (default: every built-in "
                        "one) and key=value settings (cache_dir=...)")
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=8, help="rounds per trial (a check's "
                        "perf.min_rounds)")
    parser.add_argument("--small", action="store_true", help="one trial of one task")
    add_smoke(parser)
    args = parser.parse_args()
    words, overrides = split_overrides(args.args)
    config = make_config(overrides, None, None)
    if args.small or args.smoke:
        args.trials, args.rounds = 1, 4
        words = words[:1] or ["perf/idna-long-inputs"]
    tasks = [catalog.resolve(w, config) for w in words] if words else \
        [t for t in catalog.select(config, "perf") if t.path is not None
         and t.path.parent == Path(str(catalog.resolve("perf/packaging-canonicalize",
                                                       config).path)).parent]
    print(f"{args.trials} trials of {args.rounds} rounds per task; load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'task':<32} {'trials':>6} {'rejected (CPU rule)':>20} {'(wall rule)':>12} "
          f"{'extra CPU ms median':>20} {'s/trial':>8}")
    total = rejected_total = 0
    for task in tasks:
        releases.prepare(payload_of(task), config, task_dir(task))
        with tempfile.TemporaryDirectory(prefix="kbtool-moved-") as tmp:
            os.chdir(tmp)
            check = Check(task, config, time.monotonic())
            check.start(None)
            started = time.monotonic()
            outcomes = [trial(check, args.rounds) for _ in range(args.trials)]
            os.chdir("/")
        per_trial = (time.monotonic() - started) / args.trials
        extras = [e for _, _, found in outcomes for e in found]
        rejected = sum(r for r, _, _ in outcomes)
        total += args.trials
        rejected_total += rejected
        median = f"{statistics.median(extras):.1f}" if extras else "-"
        print(f"{task.id:<32} {args.trials:>6} {rejected:>20} "
              f"{sum(w for _, w, _ in outcomes):>12} {median:>20} {per_trial:>8.1f}",
              flush=True)
    print(f"the human patch passed the moved-work check in {total - rejected_total} of "
          f"{total} trials (target: all)")


if __name__ == "__main__":
    main()
