"""Layout bias: two processes running the very same model, timed against each other.

Run:  python bench/layout_bias.py [--task builtin/2/4] [--pairs 10] [--rounds 30] [--json PATH]

KernelBench checks on a CPU time the reference and the candidate in two runner processes.
This benchmark asks how much two such processes differ when they run identical code on
identical inputs, and why.  Per trial it forks two processes that build the task's
``Model`` under one seed, with the runners' allocator settings (``same_allocator``), one
thread, both pinned to the same CPU, and times them in alternating windows by their CPU time
(as the judge does), rotating the order each round; the ratio is the balanced paired ratio
of ``kbtool.timing.compare``.  Two conditions, trials interleaved:

* ``same``: both processes allocate the same things in the same order, so their heaps are
  laid out alike;
* ``shifted``: before building the model each process takes a block of a random size below
  64 KiB from the heap, as a different allocation history would (a candidate that loads one
  more module, a reference that builds a compiled copy), so its later buffers sit at other
  offsets.

Printed per condition: each pair's ratio and interval, the share within 0.95-1.05, and the
share whose interval excludes 1 (a null called faster or slower).  A benchmark, not a
test: it exits 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench_common import add_smoke, apply_smoke, fmt, json_safe

WINDOW_CALLS = 14   # calls in one timed window (the judge aims at about 10 ms)
SHIFT_MAX = 64 * 1024
SETS = 4            # input sets rotated through a window


def cpu_ns(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat") as handle:
            total += int(handle.read().split()[0])
    return total


def child(problem: Any, seed: int, shift: int, cpu: int, requests: int, replies: int) -> None:
    """Build the model and run a window of calls per request byte, until EOF."""
    import torch

    from kbtool_plugins.kernelbench.runner import same_allocator

    same_allocator()
    torch.set_num_threads(1)
    torch.set_grad_enabled(False)
    kept = torch.empty(shift, dtype=torch.uint8) if shift else None  # noqa: F841 (held)
    torch.manual_seed(seed)
    model = problem.Model(*problem.get_init_inputs())
    inputs = [problem.get_inputs() for _ in range(SETS)]
    for args in inputs:
        model(*args)
    os.sched_setaffinity(0, {cpu})
    while os.read(requests, 1) == b"w":
        outputs = [model(*inputs[i % SETS]) for i in range(WINDOW_CALLS)]
        del outputs
        os.write(replies, b"d")
    os._exit(0)


class Process:
    def __init__(self, problem: Any, seed: int, shift: int, cpu: int) -> None:
        down_r, self.down = os.pipe()
        self.up, up_w = os.pipe()
        sys.stdout.flush()
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - the child never returns
            # Only its own two ends: a pipe end of the other process kept open here would
            # keep that one waiting for a request after the parent closed it.
            low, high = sorted((down_r, up_w))
            os.closerange(3, low)
            os.closerange(low + 1, high)
            os.closerange(high + 1, 1 << 16)
            try:
                child(problem, seed, shift, cpu, down_r, up_w)
            finally:
                os._exit(1)
        os.close(down_r)
        os.close(up_w)

    def window(self) -> float:
        """CPU ms of one window."""
        start = cpu_ns(self.pid)
        os.write(self.down, b"w")
        if os.read(self.up, 1) != b"d":
            raise RuntimeError("a timed process died")
        return (cpu_ns(self.pid) - start) / 1e6

    def close(self) -> None:
        os.close(self.down)
        os.waitpid(self.pid, 0)
        os.close(self.up)


def one_pair(problem: Any, shifted: bool, rounds: int, cpu: int) -> dict[str, Any]:
    from kbtool.timing.compare import paired_ratio, places, rotation

    shifts = [random.randrange(SHIFT_MAX // 64) * 64 if shifted else 0 for _ in range(2)]
    seed = random.randrange(2**31)
    pair = {"a": Process(problem, seed, shifts[0], cpu), "b": Process(problem, seed, shifts[1], cpu)}
    try:
        for _ in range(3):  # warm-up windows
            for proc in pair.values():
                proc.window()
        times: dict[str, list[float]] = {"a": [], "b": []}
        for index in range(rounds):
            for arm in rotation(["a", "b"], index):
                times[arm].append(pair[arm].window())
    finally:
        for proc in pair.values():
            proc.close()
    ratio = paired_ratio(times["a"], times["b"], positions=places(rounds, 2))
    return {"shifts": shifts, "ratio": ratio.estimate, "low": ratio.low, "high": ratio.high,
            "half_width": ratio.rel_halfwidth, "window_ms": statistics.median(times["a"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="builtin/2/4", help="a built-in KernelBench task")
    p.add_argument("--pairs", type=int, default=10, help="process pairs per condition")
    p.add_argument("--rounds", type=int, default=30, help="rounds per pair")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    add_smoke(p)
    args = apply_smoke(p.parse_args(argv), pairs=1, rounds=8)

    from kbtool.config import load_config
    from kbtool.task import catalog
    from kbtool_plugins.kernelbench.problem import load_module

    task = catalog.resolve(args.task, load_config({"device": "cpu"}))
    problem = load_module(task.path.read_text(), "kbtool_layout_bias", str(task.path))
    cpu = max(os.sched_getaffinity(0))
    started = time.perf_counter()
    print(f"layout bias: {task.id}, {args.pairs} pairs x {args.rounds} rounds per condition, "
          f"{WINDOW_CALLS} calls per window, both processes on CPU {cpu}, "
          f"load {os.getloadavg()[0]:.1f}")
    rows: dict[str, list[dict[str, Any]]] = {"same": [], "shifted": []}
    for _ in range(args.pairs):
        for condition in rows:  # interleaved: the machine's drift hits both alike
            row = one_pair(problem, condition == "shifted", args.rounds, cpu)
            rows[condition].append(row)
            print(f"  {condition:8s} shifts {row['shifts'][0]:6d} {row['shifts'][1]:6d}  "
                  f"ratio {row['ratio']:.3f} [{row['low']:.3f}-{row['high']:.3f}]  "
                  f"window {row['window_ms']:.2f} ms")
    print("\ncondition  pairs  within 0.95-1.05  interval excludes 1  min    max    "
          "median +-")
    summary = {}
    for condition, found in rows.items():
        ratios = [r["ratio"] for r in found]
        within = sum(0.95 <= r <= 1.05 for r in ratios) / len(ratios)
        excludes = sum(r["low"] > 1 or r["high"] < 1 for r in found) / len(found)
        half = statistics.median(r["half_width"] for r in found)
        summary[condition] = {"within": within, "excludes_1": excludes, "min": min(ratios),
                              "max": max(ratios), "median_half_width": half}
        print(f"{condition:9s} {len(found):6d}  {within:16.0%}  {excludes:19.0%}  "
              f"{min(ratios):.3f}  {max(ratios):.3f}  {fmt(100 * half, '.1f')}%")
    print(f"\nbenchmark wall time: {time.perf_counter() - started:.1f} s")
    if args.json:
        args.json.write_text(json.dumps(json_safe({"task": task.id, "rows": rows,
                                                   "summary": summary}), indent=2))
    return 0 if all(math.isfinite(r["ratio"]) for found in rows.values() for r in found) else 1


if __name__ == "__main__":
    sys.exit(main())
