"""Pool start: how soon a pool of local evaluators answers, and whether its zygotes last.

Run:  python bench/pool_start.py [--eval-workers 2] [--tasks 8] [--rounds 3] [--json PATH]

A search starts ``eval_workers`` evaluators side by side (each a warm zygote process that
imports torch once), then each task's own thread asks them for work.  The zygotes arm a
parent-death signal, and Linux ties that signal to the *thread* that started the process:
started from a pool's thread, a zygote was killed as soon as that thread returned, and the
first call paid a second start-up (so did every later call whose zygote a finished task's
thread had started).  Two arms, rounds alternating, each round a fresh pool:

* ``tied``: what kbtool does (``namespaces.popen_tied``: zygotes start from one thread
  that lives as long as the process);
* ``thread``: the code before (each zygote started by the thread that asked for it).

Per round: the pool's start-up, the time until one thread per evaluator has its first
answer (an inspection of a built-in task), the time until every task thread (one per task,
started in waves of ``eval_workers``, each ending after its answer) has one, how many
zygotes were started in all, and how many of the last ones are still alive at the end.
A benchmark, not a test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench_common import add_smoke, apply_smoke, fmt, json_safe


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-workers", type=int, default=2, help="evaluators (2)")
    parser.add_argument("--tasks", type=int, default=8, help="task threads per round (8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per arm (3)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    add_smoke(parser)
    return apply_smoke(parser.parse_args(argv), rounds=1, tasks=2, eval_workers=1)


def one_round(arm: str, args: argparse.Namespace) -> dict[str, Any]:
    import kbtool.sandbox.zygote as zygote
    from kbtool.config import load_config
    from kbtool.evaluation.backend import LocalBackend
    from kbtool.sandbox.namespaces import popen_tied
    from kbtool.task.catalog import select

    def from_the_asking_thread(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, **kwargs)

    starts = [0]
    original_start = zygote.Zygote._start

    def counted(self: Any) -> subprocess.Popen[bytes]:
        starts[0] += 1
        return original_start(self)

    zygote.popen_tied = popen_tied if arm == "tied" else from_the_asking_thread
    zygote.Zygote._start = counted  # type: ignore[method-assign]
    try:
        config = load_config({"device": "cpu", "eval_workers": args.eval_workers})
        builtin = select(config, "builtin")
        tasks = [builtin[i % len(builtin)] for i in range(args.tasks)]
        t0 = time.monotonic()
        pool = LocalBackend(config)
        t1 = time.monotonic()
        answered: list[float] = []
        lock = threading.Lock()

        def ask(task: Any) -> None:
            pool.inspect(task, config)
            with lock:
                answered.append(time.monotonic())

        try:
            for first in range(0, len(tasks), args.eval_workers):
                wave = [threading.Thread(target=ask, args=(task,))
                        for task in tasks[first:first + args.eval_workers]]
                for thread in wave:
                    thread.start()
                for thread in wave:
                    thread.join()
            time.sleep(0.2)  # a zygote killed with the last wave's threads shows as dead
            alive = sum(1 for ev in pool.all
                        if ev.zygote._proc is not None and ev.zygote._proc.poll() is None)
        finally:
            pool.close()
        first_answers = sorted(answered)[min(args.eval_workers, len(answered)) - 1]
        return {"arm": arm, "start_s": t1 - t0, "first_answers_s": first_answers - t1,
                "all_answers_s": max(answered) - t1, "zygote_starts": starts[0],
                "alive_at_end": alive}
    finally:
        zygote.popen_tied = popen_tied
        zygote.Zygote._start = original_start  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    rows: list[dict[str, Any]] = []
    arms = ["tied", "thread"]
    for rnd in range(args.rounds):
        for arm in arms if rnd % 2 == 0 else arms[::-1]:
            print(f"round {rnd + 1}: {arm} ...", file=sys.stderr, flush=True)
            rows.append(one_round(arm, args))
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(f"kbtool pool start benchmark: {args.eval_workers} evaluators, {args.tasks} task "
          f"threads, {args.rounds} rounds per arm (alternating); load average {load} at the end")
    print(f"{'arm':8s} {'start s':>8s} {'first answers s':>16s} {'all answers s':>14s} "
          f"{'zygote starts':>14s} {'alive at end':>13s}")
    summary: dict[str, Any] = {}
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        for row in mine:
            print(f"{arm:8s} {fmt(row['start_s'], '.2f'):>8s} "
                  f"{fmt(row['first_answers_s'], '.2f'):>16s} "
                  f"{fmt(row['all_answers_s'], '.2f'):>14s} {row['zygote_starts']:>14d} "
                  f"{row['alive_at_end']:>9d} of {args.eval_workers}")
        summary[arm] = {key: statistics.median(r[key] for r in mine)
                        for key in ("start_s", "first_answers_s", "all_answers_s",
                                    "zygote_starts", "alive_at_end")}
    for arm in arms:
        s = summary[arm]
        print(f"median {arm}: start {s['start_s']:.2f} s, first answers {s['first_answers_s']:.2f}"
              f" s, all answers {s['all_answers_s']:.2f} s, zygote starts {s['zygote_starts']:g}")
    if args.json:
        args.json.write_text(json.dumps(json_safe({"rows": rows, "median": summary}), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
