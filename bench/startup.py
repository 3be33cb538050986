"""Start-up: how long kbtool takes before it does anything, beside Python's own start-up.

Run:  python bench/startup.py [--rounds 5] [--item repo/packaging/method_gen/1]
                              [--json PATH] [--smoke]

Five commands, run as a user types them (fresh processes, kbtool's console script), in
rounds; each round runs them in an order rotated by one, so that the machine's noise falls
on all alike:

- ``python -c pass``: the interpreter's start-up (site, this venv's ``.pth`` files);
- ``kbtool --help`` and ``kbtool tasks list``: what start-up adds to the quickest commands
  (targets: at most 0.3 s above ``python -c pass``);
- ``kbtool eval ITEM --solution FILE``: a one-shot check of a built-in repository item with
  the item's own method as the candidate (it must pass), the evaluator, its warm process and
  the sandbox started and ended;
- ``bare``: the same item's tests run by the repository's own runner on the pristine tree,
  no kbtool (what ``bench/repo_turnaround.py`` calls bare; target: the one-shot eval at most
  2x this).

Printed: per command the median wall time, its range and the median CPU time of the
processes it ran (on a busy machine nearer to what an idle one would take than the wall
time), the differences to ``python -c pass`` and the eval's ratio to the bare run.  The
repository is fetched once before the rounds (kbtool's cache).  A benchmark, not a test: it
exits 0 whatever the figures (1 if the eval or the bare run did not pass).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_common import add_smoke, apply_smoke, fmt, json_safe
from repo_turnaround import bare

HELP_TARGET_S = 0.3  # --help and tasks list above python -c pass
EVAL_TARGET = 2.0    # one-shot eval over the bare tests


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds (5)")
    parser.add_argument("--item", default="repo/packaging/method_gen/1",
                        help="a built-in repository item (repo/packaging/method_gen/1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    add_smoke(parser)
    return apply_smoke(parser.parse_args(argv), rounds=1)


def kbtool_script() -> str:
    """kbtool's console script beside this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "kbtool"
    found = str(beside) if beside.is_file() else shutil.which("kbtool")
    if found is None:
        raise SystemExit("startup: no kbtool console script (pip install -e .)")
    return found


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str]) -> tuple[float, bool]:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"{' '.join(argv)}: exit {proc.returncode}\n{proc.stderr[-2000:]}", file=sys.stderr)
    return took, proc.returncode == 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from kbtool.config import load_config
    from kbtool.task import catalog
    from kbtool_plugins.repo import repository
    from kbtool_plugins.repo.settings import RepoPayload

    config = load_config({})
    task = catalog.resolve(args.item, config)
    if task.kind != "repo":
        raise SystemExit(f"startup: {args.item} is not a repository item")
    item = RepoPayload.model_validate(task.payload)
    repo = repository.fetch(item.spec, config.cache_dir)
    kbtool = kbtool_script()
    with tempfile.TemporaryDirectory(prefix="kbtool-startup-") as tmp:
        solution = Path(tmp) / "solution.py"
        solution.write_text(item.original)  # the method as the repository has it: passes
        arms: dict[str, Callable[[], tuple[float, bool]]] = {
            "python -c pass": lambda: timed([sys.executable, "-c", "pass"]),
            "kbtool --help": lambda: timed([kbtool, "--help"]),
            "kbtool tasks list": lambda: timed([kbtool, "tasks", "list"]),
            "kbtool eval": lambda: timed([kbtool, "eval", task.id, "--solution",
                                          str(solution)]),
            "bare": lambda: bare(repo, item),
        }
        names = list(arms)
        print(f"{args.rounds} round(s), {task.id} ({len(item.tests)} tests), "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
              f"Python {platform.python_version()}", flush=True)
        times: dict[str, list[float]] = {name: [] for name in names}
        cpu: dict[str, list[float]] = {name: [] for name in names}
        failed: list[str] = []
        for rnd in range(args.rounds):
            shift = rnd % len(names)
            for name in names[shift:] + names[:shift]:
                before = children_cpu()
                took, ok = arms[name]()
                cpu[name].append(children_cpu() - before)
                times[name].append(took)
                if not ok:
                    failed.append(f"{name} (round {rnd + 1})")
    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu.items()}
    base = median["python -c pass"]
    print(f"{'command':20} {'median s':>9} {'min s':>7} {'max s':>7} {'CPU s':>7}  beside")
    for name in names:
        beside = ""
        if name in ("kbtool --help", "kbtool tasks list"):
            over = median[name] - base
            beside = (f"+{over:.3f} s over python (target <= {HELP_TARGET_S} s: "
                      f"{'met' if over <= HELP_TARGET_S else 'NOT met'})")
        elif name == "kbtool eval":
            ratio = median[name] / median["bare"]
            beside = (f"{ratio:.2f}x the bare tests (target <= {EVAL_TARGET:g}x: "
                      f"{'met' if ratio <= EVAL_TARGET else 'NOT met'})")
        print(f"{name:20} {fmt(median[name]):>9} {fmt(min(times[name])):>7} "
              f"{fmt(max(times[name])):>7} {fmt(median_cpu[name]):>7}  {beside}")
    print(f"load at the end {os.getloadavg()[0]:.1f}")
    if failed:
        print(f"did not pass: {', '.join(failed)}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(json_safe({
            "item": task.id, "rounds": args.rounds, "times": times, "median": median,
            "cpu": cpu, "median_cpu": median_cpu,
            "over_python": {n: median[n] - base for n in ("kbtool --help", "kbtool tasks list")},
            "eval_over_bare": median["kbtool eval"] / median["bare"], "failed": failed}),
            indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
