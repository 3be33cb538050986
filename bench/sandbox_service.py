"""Throughput of the sandbox REST service (`kbtool sandbox serve`) with 1, 2 and 4 workspaces.

Run:  python bench/sandbox_service.py [--workspaces 1 2 4] [--items 24] [--rounds 3]
                                      [--repo NAME] [--repo-data DIR] [--json PATH] [--smoke]

One service per workspace count is started (each a `kbtool sandbox serve` subprocess) and
all stay up; then, in each round, every service gets a burst of ``--items`` requests sent at
once over HTTP, the services taking turns in a rotating order (so the host's noise falls
on each alike).  A request is an item's own method put back in place (``replace_content`` =
the method as it is in the repository), so every check runs the item's tests to a pass.

Measured per workspace count: throughput (items / s from the first request of a burst to
its last answer; the median over rounds), its ratio to one workspace's from the same
rounds, the median latency of a request (queueing included) and the median time a
workspace spent on an item (the service's ``wall_s``).  With W workspaces on a machine of C
cores, throughput grows about min(W, C)-fold while the checks are CPU-bound.

Items: the data set ``--repo`` (a built-in one, or one in ``--repo-data``; fetched by pip the
first time); by default the first built-in data set, or, where none is installed, and with
``--smoke`` (a run of seconds whose figures mean nothing), the small offline repository of
the tests (``tests/repo_service/mini.py``).  A benchmark, not a test: exits 0 whatever the
figures (1 if a check did not pass).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from bench_common import add_smoke, apply_smoke, fmt, json_safe

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.repo_service.mini


def requests_of(folder: Path, count: int) -> list[dict[str, Any]]:
    """``count`` bodies of /run_item: the data set's items in turn, each its own method."""
    from kbtool_plugins.repo.dataset import load

    data = load(folder)
    bodies = []
    for idx in range(count):
        item = data.items[idx % len(data.items)]
        bodies.append({"idx": idx, "dp_id": idx, "file_path": item.file_path,
                       "replace_content": item.original, "method_name": item.method_name,
                       "start_line": item.decorator_line, "end_line": item.end_line,
                       "tests": item.tests, "repo": data.spec.name})
    return bodies


def burst(url: str, bodies: list[dict[str, Any]]) -> dict[str, Any]:
    def one(body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        start = time.monotonic()
        reply = httpx.post(f"{url}/run_item", json=body, timeout=3600)
        reply.raise_for_status()
        return time.monotonic() - start, reply.json()["result"]

    start = time.monotonic()
    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(one, bodies))
    wall = time.monotonic() - start
    return {"wall_s": wall, "throughput": len(bodies) / wall,
            "latency_s": [a[0] for a in answers], "item_s": [a[1]["wall_s"] for a in answers],
            "statuses": [a[1]["status"] for a in answers]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--items", type=int, default=24, help="requests per burst (24)")
    parser.add_argument("--rounds", type=int, default=3, help="bursts per service (3)")
    parser.add_argument("--repo", default=None, help="the data set's repository name")
    parser.add_argument("--repo-data", type=Path, default=None, help="a data set folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    add_smoke(parser)
    args = apply_smoke(parser.parse_args(argv), workspaces=[1, 2], items=4, rounds=1)

    from kbtool.util.dirs import cache_dir
    from kbtool_plugins.repo.dataset import builtin_folders, load
    from tests.repo_service.mini import Mini, Service, make_mini

    tmp = Path(tempfile.mkdtemp(prefix="kbtool-bench-sandbox-"))
    folders = [*builtin_folders(), *([args.repo_data] if args.repo_data else [])]
    chosen = [f for f in folders if args.repo in (None, load(f).spec.name)]
    if args.smoke or not chosen:
        if args.repo and not args.smoke:
            parser.error(f"no data set of repository {args.repo!r}")
        mini = make_mini(tmp)
        folder, settings = mini.data, mini
    else:
        folder = chosen[-1] if args.repo_data else chosen[0]
        settings = Mini(cache_dir(), folder, {})  # the user's cache: fetched once
    name = load(folder).spec.name
    bodies = requests_of(folder, args.items)
    print(f"sandbox service throughput: {len(bodies)} items of {name} per burst, "
          f"{args.rounds} rounds, {os.cpu_count()} cores ({platform.processor() or '?'})",
          flush=True)
    services: dict[int, Service] = {}
    try:
        for count in args.workspaces:
            services[count] = Service(settings, workspaces=count, repo=name,
                                      log_dir=tmp).start(600)
        for service in services.values():
            burst(service.url, bodies[:min(2, len(bodies))])  # warm: first imports, caches
        runs: dict[int, list[dict[str, Any]]] = {count: [] for count in services}
        order = list(services)
        for round_ in range(args.rounds):
            for count in order[round_ % len(order):] + order[:round_ % len(order)]:
                runs[count].append(burst(services[count].url, bodies))
    finally:
        for service in services.values():
            service.kill()
    base = statistics.median(r["throughput"] for r in runs[order[0]])
    figures = {}
    print(f"{'workspaces':>10} {'items/s':>8} {'x ' + str(order[0]):>6} {'latency p50 s':>14} "
          f"{'item p50 s':>11}")
    for count, bursts in runs.items():
        throughput = statistics.median(r["throughput"] for r in bursts)
        latency = statistics.median(x for r in bursts for x in r["latency_s"])
        item = statistics.median(x for r in bursts for x in r["item_s"])
        figures[count] = {"throughput": throughput, "ratio": throughput / base,
                          "latency_p50_s": latency, "item_p50_s": item, "bursts": bursts}
        print(f"{count:>10} {fmt(throughput, '.2f'):>8} {fmt(throughput / base, '.2f'):>6} "
              f"{fmt(latency, '.2f'):>14} {fmt(item, '.2f'):>11}")
    failed = [s for r in runs.values() for b in r for s in b["statuses"] if s != "passed"]
    if failed:
        print(f"{len(failed)} checks did not pass: {sorted(set(failed))}")
    if args.json:
        args.json.write_text(json.dumps(json_safe({"repo": name, "items": len(bodies),
                                                   "rounds": args.rounds,
                                                   "cores": os.cpu_count(),
                                                   "figures": figures}), indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
