"""Per-candidate harness overhead of kbtool, next to a fresh-Python-subprocess-per-candidate design.

Run:  python bench/eval_overhead.py [--repeats N] [--fresh-repeats M] [--tasks ID ...] [--json PATH]

Every built-in task's reference is evaluated as a candidate (its source plus ``ModelNew = Model``).

* kbtool design: one ``Evaluator`` in this process, used for every candidate.  It keeps a warm
  process that imported torch once and forks one isolated child per candidate.  Baselines are
  measured first and not counted.
* fresh-subprocess design (the common one, e.g. PIKE's worker): per candidate, a new
  ``python -c SCRIPT`` imports torch and kbtool and calls the kernelbench kind's ``check``
  in-process with a reporter that records stage timestamps.  Both designs run the very same
  ``check`` code, so the difference is the process design only.

Overhead of one candidate = wall time of the evaluation - (correctness stage + timing stage).
For kbtool the stages are ``EvalResult.stage_s`` as is (the last stage ends when the child
sent its result); for the fresh design, the timing stage ends when ``check`` returns.

This is a benchmark, not a test: it prints figures and whether the targets are met, and
exits 0 either way (1 only if an evaluation did not come back ``ok``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import add_smoke, apply_smoke, fmt, json_safe, percentile

# Targets of issue 11 (the judge's extra processes and copies included).
TARGET_MEDIAN_S = 0.1
TARGET_RATIO = 5.0
TARGET_VERDICT_S = 1.0
VERDICT_REL_CI = 0.02

# The fresh-subprocess worker.  argv[1]: JSON spec (config, task, solution, output file).
FRESH_CHILD = r"""
import json, sys, time
spec = json.loads(sys.argv[1])
from pathlib import Path
import torch  # noqa: F401  (what every fresh worker pays)
from kbtool.config import Config
from kbtool.plugin import registry
from kbtool.task.model import Task

config = Config.model_validate(spec["config"])
timer = registry.TIMERS.get(spec["timer"])
task = Task.model_validate(spec["task"])
kind = registry.TASK_KINDS.get(task.kind)
stamps = {}


class StampReporter:
    started = time.monotonic()  # the check's time limit counts from here

    def stage(self, name):
        stamps[name] = time.monotonic()

    def send(self, message):
        pass


result = kind.check(task, Path(spec["solution"]), config, timer, StampReporter())
t_end = time.monotonic()
with open(spec["out"], "w") as handle:
    json.dump({"t_end": t_end, "stamps": stamps, "status": result.get("status"),
               "error": result.get("error"),
               "runtime_ms": (result.get("timing") or {}).get("median_ms")}, handle)
"""




def correctness_trials(config: Any) -> int:
    """The kernelbench kind's setting (the built-in tasks are KernelBench problems)."""
    from kbtool_plugins.kernelbench.settings import KernelBenchSettings

    return config.section(KernelBenchSettings).correctness_trials


def med(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    vals = [r["overhead_s"] for r in rows]
    return {"n": len(vals), "median": med(vals), "p90": percentile(vals, 90),
            "mean": statistics.fmean(vals) if vals else math.nan,
            "max": max(vals) if vals else math.nan}






def eval_kbtool(evaluator: Any, task: Any, solution: Path) -> dict[str, Any]:
    start = time.perf_counter()
    result = evaluator.evaluate(task, solution)
    wall = time.perf_counter() - start
    corr = result.stage_s.get("correctness", 0.0)
    timing = result.stage_s.get("timing", 0.0)
    return {"task": task.id, "status": result.status.value, "error": result.error,
            "wall_s": wall, "correctness_s": corr, "timing_s": timing,
            "overhead_s": wall - corr - timing, "runtime_ms": result.runtime_ms}


def eval_fresh(config: Any, timer_name: str, task: Any, solution: Path,
               workdir: Path) -> dict[str, Any]:
    out = workdir / "fresh-result.json"
    out.unlink(missing_ok=True)
    spec = {
        "config": config.model_dump(mode="json"),
        "task": task.model_dump(mode="json"),
        "solution": str(solution), "out": str(out), "timer": timer_name,
    }
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", FRESH_CHILD, json.dumps(spec)],
                          capture_output=True, text=True, cwd=workdir)
    wall = time.perf_counter() - start
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        return {"task": task.id, "status": "crashed", "wall_s": wall,
                "error": (proc.stdout + proc.stderr)[-2000:], "overhead_s": math.nan}
    s = data["stamps"]
    corr = s["timing"] - s["correctness"] if "timing" in s and "correctness" in s else 0.0
    timing = data["t_end"] - s["timing"] if "timing" in s else 0.0
    return {"task": task.id, "status": data["status"], "error": data["error"],
            "wall_s": wall, "correctness_s": corr, "timing_s": timing,
            "overhead_s": wall - corr - timing, "runtime_ms": data["runtime_ms"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5, help="kbtool evaluations per task (default 5)")
    p.add_argument("--fresh-repeats", type=int, default=2,
                   help="fresh-subprocess evaluations per task (default 2; each costs a "
                        "Python+torch start-up)")
    p.add_argument("--tasks", nargs="*", default=None,
                   help="task ids or unique prefixes (default: every built-in task)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--correctness-trials", type=int, default=2)
    p.add_argument("--min-trials", type=int, default=5)
    p.add_argument("--max-timing-s", type=float, default=0.2)
    p.add_argument("--threads", type=int, default=None,
                   help="set OMP_NUM_THREADS/MKL_NUM_THREADS for both designs (default: leave "
                        "torch's default, one thread per core)")
    p.add_argument("--verdict-task", default="builtin/1/2",
                   help="sub-millisecond task of the time-to-verdict figure (default builtin/1/2)")
    p.add_argument("--verdict-repeats", type=int, default=5,
                   help="evaluations for the time-to-verdict figure (default 5; 0: skip)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--verbose", action="store_true", help="print a line per evaluation")
    add_smoke(p)
    args = apply_smoke(p.parse_args(argv), repeats=1, fresh_repeats=1, tasks=["builtin/1/2"],
                       verdict_repeats=1)
    if args.repeats < 1 or args.fresh_repeats < 0:
        p.error("--repeats must be >= 1 and --fresh-repeats >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_bench = time.perf_counter()
    if args.threads is not None:  # before torch is imported here or in any child
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    from kbtool.config import load_config
    from kbtool.errors import KbtoolError
    from kbtool.evaluation.evaluator import Evaluator
    from kbtool.task import catalog

    with tempfile.TemporaryDirectory(prefix="kbtool-bench-") as tmp:
        work = Path(tmp)
        try:
            config = load_config({
                "source": "builtin", "device": args.device, "cache_dir": str(work / "cache"),
                "correctness_trials": args.correctness_trials, "min_trials": args.min_trials,
                "max_timing_s": args.max_timing_s,
            }, profile="quick")
            tasks = ([catalog.resolve(word, config) for word in args.tasks] if args.tasks
                     else catalog.select(config))
            if not tasks:
                print("no tasks selected", file=sys.stderr)
                return 2
            t = time.perf_counter()
            evaluator = Evaluator(config)  # starts the warm process (it imports torch once)
            startup_s = time.perf_counter() - t
            try:
                code, figures = measure(args, evaluator, tasks, work, startup_s)
            finally:
                evaluator.close()
            if args.verdict_repeats:
                verdict_config = load_config({
                    "source": "builtin", "device": args.device, "cache_dir": str(work / "cache"),
                    "target_rel_ci": VERDICT_REL_CI}, profile="quick")
                figures["verdict"] = time_to_verdict(args, verdict_config, work)
            print(f"\nbenchmark wall time: {time.perf_counter() - t_bench:.1f} s")
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(json_safe(figures), indent=2, default=str))
                print(f"figures written to {args.json}")
            return code
        except KbtoolError as exc:
            print(f"eval_overhead: error: {exc}", file=sys.stderr)
            return 2


def time_to_verdict(args: argparse.Namespace, config: Any, work: Path) -> dict[str, Any]:
    """Wall time to a verdict on a sub-millisecond task, timing with a 2% target interval."""
    from kbtool.evaluation.evaluator import Evaluator
    from kbtool.task import catalog
    from kbtool_plugins.kernelbench.settings import KernelBenchSettings

    margin = config.section(KernelBenchSettings).process_margin
    task = catalog.resolve(args.verdict_task, config)
    sol = work / "verdict.py"
    sol.write_text(task.path.read_text() + "\n\nModelNew = Model\n")
    rows = []
    with Evaluator(config) as evaluator:
        evaluator.baseline(task, config.mode)  # planning only: not part of a verdict's time
        for _ in range(args.verdict_repeats):
            start = time.perf_counter()
            result = evaluator.evaluate(task, sol)
            wall = time.perf_counter() - start
            low, high = result.speedup_ci or (math.nan, math.nan)
            # The rounds' own interval: the reported one carries process_margin on each side.
            half = math.sqrt(high / low) / (1 + margin) - 1 if low > 0 else math.nan
            rows.append({"wall_s": wall, "status": result.status.value,
                         "runtime_ms": result.runtime_ms, "speedup": result.speedup,
                         "rel_half_width": half, "noisy": result.noisy})
    walls = [r["wall_s"] for r in rows]
    halves = [r["rel_half_width"] for r in rows]
    runtime = med([r["runtime_ms"] for r in rows if r["runtime_ms"]])
    print(f"\n== Time to a verdict: {task.id} (runtime {fmt(runtime, '.3g')} ms), "
          f"target_rel_ci={VERDICT_REL_CI} ==")
    for r in rows:
        print(f"  {r['status']:8s} wall {r['wall_s']:.3f} s  speedup {fmt(r['speedup'], '.3f')}"
              f"  interval +-{fmt(100 * r['rel_half_width'], '.1f')}%"
              f"{'  noisy' if r['noisy'] else ''}")
    met = med(walls) <= TARGET_VERDICT_S
    print(f"median time to a verdict {fmt(med(walls))} s <= {TARGET_VERDICT_S:g} s: "
          f"{'MET' if met else 'NOT MET'} (median interval +-{fmt(100 * med(halves), '.1f')}%)")
    return {"task": task.id, "runtime_ms": runtime, "rows": rows, "median_wall_s": med(walls),
            "target_met": met}


def measure(args: argparse.Namespace, evaluator: Any, tasks: list[Any], work: Path,
            startup_s: float) -> tuple[int, dict[str, Any]]:
    config = evaluator.config  # device resolved
    env = evaluator.env
    print(f"kbtool eval overhead benchmark: {len(tasks)} tasks, device {config.device} "
          f"({env.get('device_name')}), torch {env.get('torch_version')}, "
          f"python {platform.python_version()}, {os.cpu_count()} cpus, "
          f"torch threads {env.get('num_threads')}")
    print(f"settings: correctness_trials={correctness_trials(config)} warmup_trials="
          f"{config.warmup_trials} min_trials={config.min_trials} max_timing_s="
          f"{config.max_timing_s} target_rel_ci={config.target_rel_ci} timer={evaluator.timer.name}")
    print(f"kbtool start-up (Evaluator(): warm process, torch import; paid once): {startup_s:.2f} s")

    solutions: dict[str, Path] = {}
    for task in tasks:
        sol = work / "solutions" / f"{task.id.replace('/', '_')}.py"
        sol.parent.mkdir(parents=True, exist_ok=True)
        sol.write_text(task.path.read_text() + "\n\nModelNew = Model\n")
        solutions[task.id] = sol

    t = time.perf_counter()
    for task in tasks:  # baselines (and inspections): measured once, not counted
        evaluator.baseline(task, config.mode)
    print(f"baselines of {len(tasks)} tasks (not counted): {time.perf_counter() - t:.1f} s")

    rows: dict[str, list[dict[str, Any]]] = {"kbtool": [], "fresh": []}
    # Interleaved (repeat-major, then task; kbtool then fresh) so drift hits both designs alike.
    for rep in range(max(args.repeats, args.fresh_repeats)):
        for task in tasks:
            for design, repeats in (("kbtool", args.repeats), ("fresh", args.fresh_repeats)):
                if rep >= repeats:
                    continue
                sol = solutions[task.id]
                row = (eval_kbtool(evaluator, task, sol) if design == "kbtool"
                       else eval_fresh(config, evaluator.timer.name, task, sol, work))
                rows[design].append({**row, "repeat": rep})
                if args.verbose:
                    print(f"  {design:6s} r{rep} {task.id:40s} wall {row['wall_s']:.3f}s "
                          f"overhead {row['overhead_s']:.3f}s {row['status']}")

    failures = [r for r in rows["kbtool"] + rows["fresh"] if r["status"] != "ok"]
    figures = report(args, config, tasks, rows, failures)
    figures["kbtool_startup_s"] = startup_s
    return (1 if failures else 0), figures


def report(args, config, tasks, rows, failures) -> dict[str, Any]:
    ok_kb = [r for r in rows["kbtool"] if r["status"] == "ok"]
    ok_fr = [r for r in rows["fresh"] if r["status"] == "ok"]
    kb, fr = summary(ok_kb), summary(ok_fr)
    ratio = fr["median"] / kb["median"] if kb["median"] > 0 else math.nan

    print("\n== Per-candidate harness overhead (s) = wall - (correctness + timing stages) ==")
    print(f"{'design':44s} {'n':>4s} {'median':>8s} {'p90':>8s} {'mean':>8s} {'max':>8s}")
    for name, s in (("kbtool: warm process, fork per candidate", kb),
                    ("fresh `python -c` + in-process check", fr)):
        print(f"{name:44s} {s['n']:4d} {fmt(s['median']):>8s} {fmt(s['p90']):>8s} "
              f"{fmt(s['mean']):>8s} {fmt(s['max']):>8s}")
    print(f"ratio fresh/kbtool (medians): {fmt(ratio, '.1f')}x")
    print(f"fresh design: {args.fresh_repeats} run(s) per task (vs {args.repeats} for kbtool); "
          "the child imports torch + kbtool and calls the kernelbench kind's check() directly "
          "with a\n  timestamping reporter (no `kbtool eval` CLI, no baseline), so both designs "
          "run the same check code.")

    print(f"\n== Measured runtime across the {args.repeats} kbtool evaluations, per task ==")
    print(f"{'task':40s} {'ovh med s':>9s} {'median ms':>10s} {'min ms':>10s} {'max ms':>10s} "
          f"{'range %':>8s} {'CV %':>7s} {'fresh ms':>10s}")
    per_task: dict[str, Any] = {}
    for task in tasks:
        rt = [r["runtime_ms"] for r in ok_kb if r["task"] == task.id and r["runtime_ms"]]
        ov = [r["overhead_s"] for r in ok_kb if r["task"] == task.id]
        fr_rt = [r["runtime_ms"] for r in ok_fr if r["task"] == task.id and r["runtime_ms"]]
        if not rt:
            print(f"{task.id:40s} (no successful evaluation)")
            continue
        m = med(rt)
        spread = (max(rt) - min(rt)) / m * 100 if m else math.nan
        cv = (statistics.stdev(rt) / statistics.fmean(rt) * 100) if len(rt) > 1 else 0.0
        per_task[task.id] = {"runtime_ms": rt, "median_ms": m, "min_ms": min(rt),
                             "max_ms": max(rt), "range_pct": spread, "cv_pct": cv,
                             "overhead_median_s": med(ov), "fresh_runtime_ms": fr_rt}
        print(f"{task.id:40s} {fmt(med(ov)):>9s} {m:10.4g} {min(rt):10.4g} {max(rt):10.4g} "
              f"{spread:8.1f} {cv:7.1f} {fmt(med(fr_rt), '.4g'):>10s}")
    if per_task:
        ranges = [v["range_pct"] for v in per_task.values()]
        cvs = [v["cv_pct"] for v in per_task.values()]
        print(f"{'(across tasks: median / max)':40s} {'':>9s} {'':>10s} {'':>10s} {'':>10s} "
              f"{med(ranges):4.1f}/{max(ranges):<4.1f} {med(cvs):4.1f}/{max(cvs):<4.1f}")
        if med(cvs) > 10 and args.threads is None:
            print("note: large run-to-run spreads; on small VMs several OpenMP threads per "
                  "process can stall for a scheduler tick (4-8 ms) at a time. Compare with "
                  "--threads 1.")

    if failures:
        print(f"\n{len(failures)} evaluation(s) did not come back ok:")
        for r in failures[:10]:
            print(f"  {r['task']}: {r['status']}: {(r.get('error') or '').strip()[:300]}")

    met_median = kb["median"] <= TARGET_MEDIAN_S
    met_ratio = ratio >= TARGET_RATIO
    print("\n== Targets ==")
    print(f"kbtool median overhead {fmt(kb['median'])} s <= {TARGET_MEDIAN_S} s: "
          f"{'MET' if met_median else 'NOT MET'}")
    print(f"fresh/kbtool overhead ratio {fmt(ratio, '.1f')}x >= {TARGET_RATIO:g}x: "
          f"{'MET' if met_ratio else 'NOT MET'}")

    return {
        "settings": {"repeats": args.repeats, "fresh_repeats": args.fresh_repeats,
                     "device": config.device, "correctness_trials": correctness_trials(config),
                     "min_trials": config.min_trials, "max_timing_s": config.max_timing_s,
                     "threads": args.threads,
                     "fresh_design": "python -c: import torch+kbtool, kind.check in-process"},
        "overhead_s": {"kbtool": kb, "fresh": fr, "ratio_fresh_over_kbtool": ratio},
        "per_task": per_task,
        "targets": {"median_le_0.1s": met_median, "ratio_ge_5x": met_ratio},
        "rows": rows,
        "failures": len(failures),
    }


if __name__ == "__main__":
    sys.exit(main())
