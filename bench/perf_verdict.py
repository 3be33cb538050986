"""How many repeats and how much wall time a perf verdict needs, against a fixed design.

Real fresh processes, through the perf kind's own judge (``kbtool_plugins.perf.judge``): a
"library" whose one function spins a loop of N iterations, in two versions, timed
interleaved exactly as a perf check times baseline and agent.  The true speed ratio is known
(the iteration counts), so each design's verdicts can be scored:

- **adaptive** (kbtool's): rounds until the bootstrap interval of the paired ratio is within
  ``--target`` (+-3% by default) or ``--max-rounds``; significant when the interval lies above 1;
- **fixed 20** (SWE-Perf's): 20 repeats of each, IQR outliers dropped, one-sided Mann-Whitney
  at p < 0.1; and, for comparison, the bootstrap interval on the same 20 paired rounds.

Scenarios: a true 2x, 1.2x, 1.05x and the null patch (no change, 1.00x); for each, the
share of trials called significant (power; for the null: false alarms, which must stay at
or below 5%), the rounds used, the share of verdicts that reached the target interval
(``converged``) and the wall time per verdict.  ``--clock cpu`` (the perf kind's default)
times each run's CPU time inside its timed region, as the judge reads it; ``--clock wall``
the judge's wall clock.  Run both to compare them on the same machine.

    python bench/perf_verdict.py --clock cpu   # minutes: 40 null trials, 8 per gain
    python bench/perf_verdict.py --small       # seconds: checks the benchmark works
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import add_smoke, fmt

from kbtool.timing.compare import (
    StopRule,
    mann_whitney_faster,
    paired_ratio,
    rotation,
    run_rounds,
)
from kbtool_plugins.perf.judge import Judge, Version

WORKLOAD = '''
def load():
    import spin
    return spin.spin

def setup(seed):
    return seed

def experiment(spin, seed):
    return spin(seed)

def store_result(result):
    return result

def check_equivalence(reference, current):
    assert reference == current
'''


def make_version(root: Path, name: str, iterations: int) -> Version:
    folder = root / name
    folder.mkdir()
    (folder / "spin.py").write_text(
        f"def spin(seed):\n    x = seed\n    for i in range({iterations}):\n"
        "        x = (x * 31 + i) & 0xFFFF\n    return x & 0\n")
    return Version(name, Path(sys.executable), folder)


def one_trial(judge: Judge, workload: Path, base: Version, cand: Version, rule: StopRule,
              fixed: int, clock: str) -> dict[str, Any]:
    def run_round(index: int) -> dict[str, float]:
        times = {}
        for arm in rotation(["base", "cand"], index):
            version = base if arm == "base" else cand
            run = judge.run(version, workload, index)
            times[arm] = run.experiment_cpu_ms if clock == "cpu" else run.experiment_ms
        return times

    start = time.monotonic()
    adaptive = run_rounds(run_round, [("base", "cand")], rule)
    adaptive_s = time.monotonic() - start
    ratio = adaptive.ratio("base", "cand", rule)
    start = time.monotonic()
    rounds = [run_round(i) for i in range(fixed)]
    fixed_s = time.monotonic() - start
    base_ms, cand_ms = [r["base"] for r in rounds], [r["cand"] for r in rounds]
    return {"adaptive_significant": ratio.significant_faster, "adaptive_rounds": len(adaptive.times),
            "adaptive_s": adaptive_s, "adaptive_ratio": ratio.estimate,
            "adaptive_stop": adaptive.stop_reason,
            "adaptive_converged": adaptive.stop_reason == "converged",
            "adaptive_halfwidth": ratio.rel_halfwidth,
            "fixed_mw_significant": mann_whitney_faster(base_ms, cand_ms) < 0.1,
            "fixed_boot_significant": paired_ratio(base_ms, cand_ms).significant_faster,
            "fixed_s": fixed_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="seconds: tiny loops, few trials")
    add_smoke(parser)
    parser.add_argument("--iterations", type=int, default=400_000,
                        help="loop iterations of the baseline (about 20-40 ms here)")
    parser.add_argument("--null-trials", type=int, default=40)
    parser.add_argument("--gain-trials", type=int, default=8)
    parser.add_argument("--target", type=float, default=0.03)
    parser.add_argument("--min-rounds", type=int, default=8)
    parser.add_argument("--max-rounds", type=int, default=30)
    parser.add_argument("--fixed", type=int, default=20)
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="what is timed: the runs' CPU time (the perf kind's default) or "
                             "the judge's wall clock")
    parser.add_argument("--scenarios", default="2.00x,1.20x,1.05x,null",
                        help="which of 2.00x, 1.20x, 1.05x, null to run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.small or args.smoke:
        args.iterations, args.null_trials, args.gain_trials = 20_000, 4, 1
        args.min_rounds, args.max_rounds, args.fixed = 4, 6, 6
    rule = StopRule(min_rounds=args.min_rounds, max_rounds=args.max_rounds,
                    target_rel_ci=args.target)
    figures: dict[str, Any] = {"settings": vars(args) | {"json": None}}
    with tempfile.TemporaryDirectory(prefix="kbtool-perf-bench-") as tmp:
        root = Path(tmp)
        scratch = root / "scratch"
        scratch.mkdir()
        (scratch / "bench").mkdir()
        workload = scratch / "bench" / "spin_workload.py"
        workload.write_text(WORKLOAD)
        base = make_version(root, "base", args.iterations)
        scenarios = {name: ratio for name, ratio in
                     {"2.00x": 2.0, "1.20x": 1.2, "1.05x": 1.05, "null": 1.0}.items()
                     if name in args.scenarios.split(",")}
        versions = {name: make_version(root, f"v{i}", round(args.iterations / ratio))
                    for i, (name, ratio) in enumerate(scenarios.items())}
        judge = Judge(scratch, [], run_timeout_s=60)
        judge.seal()
        print(f"clock: {args.clock}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"{'scenario':>8} {'trials':>6} {'adaptive: significant':>22} {'rounds':>7} "
              f"{'converged':>9} {'+-':>6} {'s/verdict':>9} {'fixed 20 MW p<0.1':>17} "
              f"{'fixed 20 boot':>13} {'s/verdict':>9}")
        for name, version in versions.items():
            trials = args.null_trials if name == "null" else args.gain_trials
            results = [one_trial(judge, workload, base, version, rule, args.fixed, args.clock)
                       for _ in range(trials)]

            def share(key: str, results: list[dict[str, Any]] = results) -> float:
                return sum(r[key] for r in results) / len(results)

            row = {"trials": trials, "adaptive_significant": share("adaptive_significant"),
                   "adaptive_rounds_median": statistics.median(r["adaptive_rounds"] for r in results),
                   "adaptive_s_median": statistics.median(r["adaptive_s"] for r in results),
                   "adaptive_converged": share("adaptive_converged"),
                   "adaptive_halfwidth_median": statistics.median(
                       r["adaptive_halfwidth"] for r in results),
                   "adaptive_ratio_median": statistics.median(r["adaptive_ratio"] for r in results),
                   "fixed_mw_significant": share("fixed_mw_significant"),
                   "fixed_boot_significant": share("fixed_boot_significant"),
                   "fixed_s_median": statistics.median(r["fixed_s"] for r in results)}
            figures[name] = row
            print(f"{name:>8} {trials:>6} {fmt(row['adaptive_significant'], '.0%'):>22} "
                  f"{fmt(row['adaptive_rounds_median'], '.0f'):>7} "
                  f"{fmt(row['adaptive_converged'], '.0%'):>9} "
                  f"{fmt(row['adaptive_halfwidth_median'], '.1%'):>6} "
                  f"{fmt(row['adaptive_s_median'], '.1f'):>9} "
                  f"{fmt(row['fixed_mw_significant'], '.0%'):>17} "
                  f"{fmt(row['fixed_boot_significant'], '.0%'):>13} "
                  f"{fmt(row['fixed_s_median'], '.1f'):>9}")
    null = figures.get("null")
    if null is not None:
        verdict = "ok" if null["adaptive_significant"] <= 0.05 else "TOO MANY FALSE ALARMS"
        print(f"null patch not significant in {1 - null['adaptive_significant']:.0%} of "
              f"{null['trials']} trials (target >= 95%): {verdict}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
