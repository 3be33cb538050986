"""Per-item turnaround of a repository check against the bare test runner, side by side.

Run:  python bench/repo_turnaround.py [--items 33] [--rounds 3] [--repo django]
                                     [--cache-dir DIR] [--json PATH] [--small | --smoke]

For each item of a built-in data set (Django 5.2 by default; fetched by pip the first time)
two things run the item's tests (at most 20) on the item's own method, in alternation and in
an order that flips every round, so that the machine's noise falls on both alike:

- **kbtool**: ``runner.run_item`` — a child forked under kbtool's sandbox (no network,
  read-only but its scratch, limits), the edit applied to a fresh overlay workspace, the
  repository's own runner under the judge's harness (signed per-test records, tampering and
  write checks), the workspace dropped: the whole turnaround of one item;
- **bare**: the repository's runner alone on the pristine tree, as a developer types it
  (``python tests/runtests.py IDS --verbosity 0 --noinput --parallel 1``; for a pytest
  repository ``python -m pytest -q -p no:cacheprovider IDS``), no sandbox, no edit, no judge.

Printed: per item the median wall time of each and their ratio; over all items the ratio
of the summed medians and the geometric mean of the per-item ratios.  Target: at most 1.3x.
``--small`` (alias ``--smoke``, what CI runs): two items, one round, seconds.
A benchmark, not a test: exits 0 whatever the figures (1 if a check did not pass).
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
import time
from pathlib import Path

from bench_common import add_smoke, fmt, json_safe

from kbtool.util.dirs import cache_dir
from kbtool_plugins.repo import repository
from kbtool_plugins.repo.dataset import builtin_root, load
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.runner import RunLimits, RunRequest, run_item
from kbtool_plugins.repo.settings import RepoItem

TARGET = 1.3


def bare_command(repo: Repository, tests: list[str]) -> tuple[list[str], Path]:
    if repo.spec.runner == "django":
        return ([sys.executable, "tests/runtests.py", *tests, "--verbosity", "0",
                 "--noinput", "--parallel", "1"], repo.src)
    return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], repo.src


def bare(repo: Repository, item: RepoItem) -> tuple[float, bool]:
    argv, cwd = bare_command(repo, item.tests)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(str(p) for p in repo.python_path())}
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, timeout=600)
    return time.perf_counter() - start, proc.returncode == 0


def kbtool(repo: Repository, item: RepoItem) -> tuple[float, bool]:
    request = RunRequest(file_path=item.file_path, replace_content=item.original,
                         start_line=item.decorator_line, end_line=item.end_line,
                         method_name=item.method_name, tests=item.tests)
    start = time.perf_counter()
    result = run_item(repo, request, RunLimits(timeout_s=300))
    return time.perf_counter() - start, result.status == "passed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default="django", help="a built-in data set (django)")
    parser.add_argument("--items", type=int, default=None, help="first N items (all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where repositories are cached (kbtool's cache)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--small", action="store_true", help="two items, one round")
    add_smoke(parser)
    args = parser.parse_args(argv)
    if args.small or args.smoke:
        args.items, args.rounds = 2, 1
    data = load(builtin_root() / args.repo)
    repo = repository.fetch(data.spec, args.cache_dir or cache_dir())
    items = data.items[:args.items] if args.items else data.items
    print(f"{len(items)} items of {data.spec.requirement}, {args.rounds} round(s), "
          f"{os.cpu_count()} CPUs, {platform.python_version()}", flush=True)
    times: dict[str, list[list[float]]] = {"kbtool": [[] for _ in items],
                                           "bare": [[] for _ in items]}
    failed = []
    for rnd in range(args.rounds):
        for index, item in enumerate(items):
            order = [("kbtool", kbtool), ("bare", bare)]
            if (rnd + index) % 2:
                order.reverse()
            for name, fn in order:
                took, ok = fn(repo, item)
                times[name][index].append(took)
                if not ok:
                    failed.append(f"{name}: item {index + 1} ({item.method_name})")
    rows, ratios = [], []
    for index, item in enumerate(items):
        k, b = (statistics.median(times[n][index]) for n in ("kbtool", "bare"))
        ratios.append(k / b)
        rows.append({"item": index + 1, "method": item.method_name, "tests": len(item.tests),
                     "kbtool_s": k, "bare_s": b, "ratio": k / b})
    print(f"{'item':>4} {'method':32} {'tests':>5} {'kbtool s':>9} {'bare s':>9} {'ratio':>6}")
    for row in rows:
        print(f"{row['item']:>4} {row['method'][:32]:32} {row['tests']:>5} "
              f"{fmt(row['kbtool_s'])} {fmt(row['bare_s']):>9} {fmt(row['ratio'], '.2f'):>6}")
    total = sum(r["kbtool_s"] for r in rows) / sum(r["bare_s"] for r in rows)
    geomean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    print(f"turnaround / bare runner: {total:.2f}x over the summed medians, "
          f"{geomean:.2f}x geometric mean of the items (target <= {TARGET}x: "
          f"{'met' if total <= TARGET else 'NOT met'})")
    if failed:
        print(f"checks that did not pass: {', '.join(failed)}", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(json_safe({
            "repo": data.spec.requirement, "rounds": args.rounds, "items": rows,
            "ratio_of_sums": total, "geomean_ratio": geomean, "target": TARGET,
            "times": times, "failed": failed}), indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
