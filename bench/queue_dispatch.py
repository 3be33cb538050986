"""Dispatch latency, throughput and claim cost of kbtool's shared-directory queue, next to a
1-second polling design.

Run:  python bench/queue_dispatch.py [--jobs 10000] [--workers 1 4] [--paced-jobs 200]
                                     [--paced-interval-ms 20] [--json PATH]

Everything happens in a temp dir on the local disk (``--dir`` to pick another place).  Jobs
are trivial: a worker claims a job and at once stores a result, nothing is evaluated.

* kbtool design: the producer calls ``Queue.submit``; each worker is a separate process
  (multiprocessing, ``--start-method fork`` by default) running kbtool's own
  ``Worker.serve`` loop unchanged: heartbeats, ``recover_expired``, ``Queue.claim``, and when
  nothing is pending ``FolderWatch.wait(min(worker_poll_s, lease_s / 3))`` on inotify.  Only
  the evaluator is stubbed (``Worker.make_evaluator``: ``evaluate`` returns an ``ok``
  EvalResult at once), so ``Worker.run_job`` runs as in production: lease-renewal thread,
  the candidate written to the worker's scratch folder, ``Queue.finish``, and the heartbeat
  it writes after every job.  A worker counts as started when its first heartbeat is in the
  queue (what ``kbtool worker status`` reads); workers stop with SIGTERM (their drain).
* polling design (PIKE's): the sender writes ``<uuid>.json``, then an empty ``<uuid>.done``;
  every ``--poll-s`` (1 s) a receiver lists ``*.done``, sorts the names and processes them in
  order (result ``<uuid>.json`` + ``<uuid>.done`` in the output folder).  So that several
  receivers can share one folder, a receiver claims a job by renaming its ``.done`` to
  ``.taken`` (one winner); PIKE has a single receiver.  No fsync on either side.

Measured, for each design and worker count:

  burst   ``--jobs`` jobs submitted as fast as the producer can: throughput (jobs / s from
          the first submit to the last stored result) and latency, which here is mostly time
          spent waiting in the queue;
  paced   ``--paced-jobs`` jobs, one every ``--paced-interval-ms``, so the queue is near
          empty: the dispatch latency the targets are about.

Latency of a job = the worker's clock when it holds the job (claim returned, job parsed)
minus ``Job.submitted`` (stamped just before ``submit``, so the producer's write + fsync +
rename count).  Same machine, same clock.

Claim cost: queues holding 10, 1,000 and 10,000 pending jobs (``--depths``); ``--claims``
claims are timed at each depth, in turn (interleaved, so the host's noise hits every depth
alike), each followed by a finish, a heartbeat and a fresh submit, so the depth stays
constant.  Those three are timed too: they are the rest of a job's queue work, which shows
where a job's time goes.  Also timed: a claim on an empty queue (every idle wake-up), in a
fresh folder and in one that just held the most jobs.  For the polling design, the "list
``*.done`` and sort" step of one poll is timed at the same depths.

Targets (local disk): paced p50 <= 20 ms, paced p99 <= 200 ms, and a claim at the largest
depth costing at most 2x one at the smallest ("flat").  A benchmark, not a test: exits 0
whether or not the targets are met (1 if a run lost jobs).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_common import add_smoke, apply_smoke, json_safe, percentile
from bench_common import fmt as _fmt

from kbtool.config import Config
from kbtool.evaluation.result import EvalResult, Status
from kbtool.task.catalog import kind_of
from kbtool.task.model import Task
from kbtool.workers.jobqueue import Job, JobResult, Queue, new_job_id
from kbtool.workers.worker import Worker


def fmt(value: float | None, spec: str = ".1f") -> str:
    return _fmt(value, spec)

TARGET_P50_MS = 20.0
TARGET_P99_MS = 200.0
TARGET_FLAT_RATIO = 2.0  # claim cost at the largest depth / at the smallest


# -- helpers --------------------------------------------------------------------------------






def rank_correlation(xs: list[float], ys: list[float]) -> float:
    """Spearman's rho (no ties expected): 1.0 = jobs claimed in the order submitted."""
    n = len(xs)
    if n < 2:
        return math.nan

    def ranks(values: list[float]) -> list[int]:
        out = [0] * n
        for rank, i in enumerate(sorted(range(n), key=values.__getitem__)):
            out[i] = rank
        return out

    rx, ry = ranks(xs), ranks(ys)
    return 1 - 6 * sum((a - b) ** 2 for a, b in zip(rx, ry, strict=True)) / (n * (n * n - 1))


def loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


TRIVIAL_TASK = Task(id="bench/1/trivial", source="bench", name="trivial",
                    payload={"problem": "# trivial\n"})


def trivial_job(job_id: str) -> Job:
    return Job(id=job_id, task=TRIVIAL_TASK, candidate="# trivial\n")


def count_results(out_dir: Path, suffix: str) -> int:
    with os.scandir(out_dir) as entries:
        return sum(1 for e in entries if e.name.endswith(suffix) and not e.name.startswith("."))


# -- kbtool design: the real Worker.serve loop with a stub evaluator -------------------------
class _NoEvaluator:
    """Answers every candidate ``ok`` at once: the jobs measure the queue, not evaluations."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.env: dict[str, Any] = {"device": "none", "bench": "queue_dispatch"}
        kind_of(TRIVIAL_TASK)  # loads the plugins, as a real evaluator's start-up does

    def evaluate(self, task: Task, solution: Path, config: Config | None = None) -> EvalResult:
        return EvalResult(task=task.id, solution=str(solution), device="none", mode="eager",
                          status=Status.ok, correct=True)

    def close(self) -> None:
        pass


class BenchWorker(Worker):
    """kbtool's Worker, unchanged except that a job is not evaluated."""

    def __init__(self, config: Config, queue: Queue, worker_id: str) -> None:
        super().__init__(config, queue, worker_id)
        self.records: list[tuple[str, float, float, float]] = []

    def make_evaluator(self) -> Any:
        return _NoEvaluator(self.config)

    def run_job(self, job: Job, evaluator: Any) -> None:
        claimed = time.time()  # claim() has returned the parsed job
        super().run_job(job, evaluator)
        self.records.append((job.id, job.submitted, claimed, time.time()))


def kbtool_worker_main(in_dir: str, out_dir: str, side: str, worker_id: str, ready: Any,
                       stop: Any, poll_s: float, lease_s: float) -> None:
    del ready, stop  # started: its first heartbeat; stopped: SIGTERM
    config = Config.model_validate({
        "worker_input_dir": in_dir, "worker_output_dir": out_dir, "worker_poll_s": poll_s,
        "lease_s": lease_s, "cache_dir": str(Path(side).parent / "cache")})
    queue = Queue(Path(in_dir), Path(out_dir), config.lease_s, config.max_attempts)
    worker = BenchWorker(config, queue, worker_id)
    worker.serve()  # until SIGTERM (drain)
    Path(side).write_text(json.dumps(worker.records))


def kbtool_submit(queue: Queue) -> None:
    queue.submit(trivial_job(new_job_id()))


# -- polling design (PIKE's) ----------------------------------------------------------------
def polling_send(in_dir: Path) -> None:
    uid = uuid.uuid4().hex
    (in_dir / f"{uid}.json").write_text(json.dumps(
        {"id": uid, "task_id": "bench/trivial", "task_source": "# trivial\n",
         "solution": "# trivial\n", "config": {}, "submitted": time.time()}))
    (in_dir / f"{uid}.done").touch()


def polling_list(in_dir: str) -> list[str]:
    """One poll: the names of ``*.done``, sorted."""
    with os.scandir(in_dir) as entries:
        return sorted(e.name for e in entries if e.name.endswith(".done"))


def polling_worker_main(in_dir: str, out_dir: str, side: str, worker_id: str, ready: Any,
                        stop: Any, poll_s: float, lease_s: float) -> None:
    del lease_s
    records: list[tuple[str, float, float, float]] = []
    ready.set()
    next_poll = time.monotonic()
    while not stop.is_set():
        for name in polling_list(in_dir):
            uid = name[:-5]
            try:  # the claim (so that several receivers can share the folder)
                os.rename(os.path.join(in_dir, name), os.path.join(in_dir, uid + ".taken"))
            except FileNotFoundError:
                continue
            with open(os.path.join(in_dir, uid + ".json")) as handle:
                job = json.load(handle)
            claimed = time.time()
            with open(os.path.join(out_dir, uid + ".json"), "w") as handle:
                json.dump({"id": uid, "worker": worker_id, "ok": True, "finished": time.time()},
                          handle)
            open(os.path.join(out_dir, uid + ".done"), "w").close()
            records.append((uid, job["submitted"], claimed, time.time()))
        # one listing every poll_s; straight away when processing took longer than that
        next_poll = max(next_poll + poll_s, time.monotonic())
        stop.wait(next_poll - time.monotonic())
    Path(side).write_text(json.dumps(records))


DESIGNS = {
    "kbtool": {"worker": kbtool_worker_main, "result_suffix": ".json",
               "label": "kbtool (inotify + claim)"},
    "polling": {"worker": polling_worker_main, "result_suffix": ".done",
                "label": "polling 1 s (*.done)"},
}


# -- one run: start workers, produce, wait for every result ----------------------------------
def workers_started(design: str, queue: Queue | None, readies: list[Any],
                    procs: list[Any]) -> bool:
    """kbtool's workers: each has written a heartbeat (``kbtool worker status`` counts it
    alive); the polling receivers set their event."""
    if queue is not None:
        beating = {w.get("pid") for w in queue.workers() if not w.get("stopped")}
        return all(p.pid in beating for p in procs)
    return all(ready.is_set() for ready in readies)


def run_dispatch(ctx: Any, design: str, workers: int, jobs: int, interval_s: float,
                 root: Path, args: argparse.Namespace) -> dict[str, Any]:
    spec = DESIGNS[design]
    run_dir = root / f"{design}-{workers}w-{'paced' if interval_s else 'burst'}"
    in_dir, out_dir, side_dir = run_dir / "in", run_dir / "out", run_dir / "side"
    side_dir.mkdir(parents=True)
    queue = None
    if design == "kbtool":
        queue = Queue(in_dir, out_dir, lease_s=args.lease_s)
    else:
        in_dir.mkdir()
        out_dir.mkdir()
    stop = ctx.Event()
    procs, readies, sides = [], [], []
    for i in range(workers):
        ready = ctx.Event()
        side = side_dir / f"w{i}.json"
        proc = ctx.Process(target=spec["worker"], daemon=True,
                           args=(str(in_dir), str(out_dir), str(side), f"bench-w{i}", ready,
                                 stop, args.worker_poll_s if design == "kbtool" else args.poll_s,
                                 args.lease_s))
        proc.start()
        procs.append(proc)
        readies.append(ready)
        sides.append(side)
    started = time.monotonic()
    while not workers_started(design, queue, readies, procs):
        if time.monotonic() - started > 60 or not all(p.is_alive() for p in procs):
            for proc in procs:
                proc.kill()
            raise RuntimeError(f"{design}: a worker did not start")
        time.sleep(0.02)
    time.sleep(0.2)  # let every worker reach its first idle wait

    submit_s: list[float] = []
    t_first = time.time()
    start = time.monotonic()
    for i in range(jobs):
        if interval_s:
            delay = start + i * interval_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        t = time.perf_counter()
        if queue is not None:
            kbtool_submit(queue)
        else:
            polling_send(in_dir)
        submit_s.append(time.perf_counter() - t)
    produce_s = time.monotonic() - start

    deadline = time.monotonic() + max(60.0, jobs * 0.05)
    done = 0
    while time.monotonic() < deadline:
        done = count_results(out_dir, spec["result_suffix"])
        if done >= jobs:
            break
        time.sleep(0.1 if interval_s else 0.25)

    if design == "kbtool":
        for proc in procs:
            os.kill(proc.pid, signal.SIGTERM)  # Worker.drain
    else:
        stop.set()
    for proc in procs:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join()

    records: list[list[Any]] = []
    per_worker = []
    for side in sides:
        rows = json.loads(side.read_text()) if side.exists() else []
        per_worker.append(len(rows))
        records.extend(rows)
    lat_ms = [(claimed - submitted) * 1000 for _, submitted, claimed, _ in records]
    wall = (max(r[3] for r in records) - t_first) if records else math.nan
    unique = len({r[0] for r in records})
    fifo = rank_correlation([r[1] for r in records], [r[2] for r in records])
    row = {
        "design": design, "workers": workers, "mode": "paced" if interval_s else "burst",
        "interval_ms": interval_s * 1000, "jobs": jobs, "results": done, "claimed": len(records),
        "claimed_unique": unique, "per_worker": per_worker,
        "produce_s": produce_s, "submit_ms_p50": percentile(submit_s, 50) * 1000,
        "submit_ms_p99": percentile(submit_s, 99) * 1000,
        "wall_s": wall, "throughput_per_s": len(records) / wall if wall and wall > 0 else math.nan,
        "producer_rate_per_s": jobs / produce_s if produce_s > 0 else math.nan,
        "lat_ms_p50": percentile(lat_ms, 50), "lat_ms_p90": percentile(lat_ms, 90),
        "lat_ms_p99": percentile(lat_ms, 99), "lat_ms_max": max(lat_ms) if lat_ms else math.nan,
        "fifo_rank_corr": fifo,
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    return row


# -- claim cost -----------------------------------------------------------------------------
def prefill_kbtool(queue: Queue, depth: int) -> None:
    """Pending jobs exactly as submit writes them, minus the fsync (only to save time: a
    claim does not care how the file reached the disk)."""
    pending = queue.input_dir / "pending"
    for _ in range(depth):
        job = trivial_job(new_job_id())
        tmp = pending / f".{job.id}.tmp"
        tmp.write_text(job.model_dump_json())
        os.replace(tmp, pending / f"{job.id}.json")


def _claim_cycle(queue: Queue, ops: dict[str, list[float]], stats: dict[str, Any]) -> None:
    """One timed claim, then (timed separately) the rest of a job's queue operations."""
    t0 = time.perf_counter()
    job = queue.claim("bench")
    t1 = time.perf_counter()
    if job is None:
        raise RuntimeError("claim found no job in a prefilled queue")
    queue.finish(job.id, JobResult(id=job.id, worker="bench", ok=True))
    t2 = time.perf_counter()
    stats["done"] += 1
    queue.heartbeat("bench", stats)  # Worker.run_job writes one after every job
    t3 = time.perf_counter()
    kbtool_submit(queue)  # keeps the depth constant
    t4 = time.perf_counter()
    for name, dt in (("claim", t1 - t0), ("finish", t2 - t1), ("heartbeat", t3 - t2),
                     ("submit", t4 - t3)):
        ops[name].append(dt * 1e6)


def claim_cost_kbtool(root: Path, depths: list[int], claims: int) -> list[dict[str, Any]]:
    """Claims at each depth, interleaved (one at each depth in turn) so that the host's noise
    (file creation here swings from ~10 to ~300 µs with other tenants' I/O) hits all alike."""
    queues = {d: Queue(root / f"claim-kbtool-{d}" / "in", root / f"claim-kbtool-{d}" / "out")
              for d in depths}
    for depth, queue in queues.items():
        prefill_kbtool(queue, depth)
    ops = {d: {"claim": [], "finish": [], "heartbeat": [], "submit": []} for d in depths}
    stats = {d: {"done": 0, "failed": 0, "busy": False, "current": None} for d in depths}
    for _ in range(claims):
        for depth in depths:
            _claim_cycle(queues[depth], ops[depth], stats[depth])
    rows = []
    for depth in depths:
        row: dict[str, Any] = {"depth": depth, "claims": claims,
                               "measured_depth": queues[depth].depth()["pending"]}
        for name, vals in ops[depth].items():
            row[f"{name}_us_median"] = statistics.median(vals)
            row[f"{name}_us_mean"] = statistics.fmean(vals)
            row[f"{name}_us_p90"] = percentile(vals, 90)
        rows.append(row)

    # A claim on an empty queue (what every wake-up without work costs): in a fresh folder
    # and in the folder that just held the most jobs (ext4 folders do not shrink).
    empty = Queue(root / "claim-empty" / "in", root / "claim-empty" / "out")
    drained = queues[depths[-1]]
    with os.scandir(drained.input_dir / "pending") as entries:
        for entry in list(entries):
            os.unlink(entry.path)
    idle: dict[str, list[float]] = {"fresh": [], "drained": []}
    for _ in range(claims):
        for name, queue in (("fresh", empty), ("drained", drained)):
            t0 = time.perf_counter()
            queue.claim("bench")
            idle[name].append((time.perf_counter() - t0) * 1e6)
    rows[-1]["empty_after_us_median"] = statistics.median(idle["drained"])
    for depth in depths:
        shutil.rmtree(root / f"claim-kbtool-{depth}", ignore_errors=True)
    shutil.rmtree(root / "claim-empty", ignore_errors=True)
    for row in rows:
        row["empty_fresh_us_median"] = statistics.median(idle["fresh"])
    return rows


def list_cost_polling(root: Path, depth: int, repeats: int) -> dict[str, Any]:
    in_dir = root / f"claim-polling-{depth}"
    in_dir.mkdir(parents=True)
    for _ in range(depth):
        polling_send(in_dir)
    vals = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        names = polling_list(str(in_dir))
        vals.append((time.perf_counter() - t0) * 1e6)
    assert len(names) == depth
    shutil.rmtree(in_dir, ignore_errors=True)
    med = statistics.median(vals)
    return {"depth": depth, "repeats": repeats, "list_sort_us_median": med,
            "list_sort_us_p90": percentile(vals, 90), "per_job_us": med / max(depth, 1)}


# -- report -------------------------------------------------------------------------------
def print_dispatch(rows: list[dict[str, Any]]) -> None:
    print(f"{'design':26s} {'wk':>2s} {'mode':17s} {'jobs':>6s} {'ok':>6s} {'jobs/s':>8s} "
          f"{'prod/s':>7s} {'p50 ms':>8s} {'p90 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} "
          f"{'submit p50':>10s} {'fifo':>5s}")
    for r in rows:
        mode = "burst" if r["mode"] == "burst" else f"paced {r['interval_ms']:g} ms"
        print(f"{DESIGNS[r['design']]['label']:26s} {r['workers']:2d} {mode:17s} {r['jobs']:6d} "
              f"{r['claimed_unique']:6d} {fmt(r['throughput_per_s']):>8s} "
              f"{fmt(r['producer_rate_per_s'], '.0f'):>7s} {fmt(r['lat_ms_p50']):>8s} "
              f"{fmt(r['lat_ms_p90']):>8s} {fmt(r['lat_ms_p99']):>8s} {fmt(r['lat_ms_max']):>8s} "
              f"{fmt(r['submit_ms_p50'], '.2f'):>8s}ms {fmt(r['fifo_rank_corr'], '.2f'):>5s}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=10000, help="jobs of each burst run (10000)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="worker counts (1 4)")
    p.add_argument("--paced-jobs", type=int, default=200, help="jobs of each paced run (200)")
    p.add_argument("--paced-interval-ms", type=float, default=20.0,
                   help="spacing of the paced runs (20 ms)")
    p.add_argument("--designs", nargs="+", default=list(DESIGNS), choices=list(DESIGNS))
    p.add_argument("--depths", type=int, nargs="+", default=[10, 1000, 10000],
                   help="queue depths of the claim-cost measurement (10 1000 10000; the target "
                        "compares the largest with the smallest)")
    p.add_argument("--claims", type=int, default=500, help="timed claims per depth (500)")
    p.add_argument("--poll-s", type=float, default=1.0, help="polling design's interval (1 s)")
    p.add_argument("--worker-poll-s", type=float, default=0.5,
                   help="kbtool's worker_poll_s (default: the config default, 0.5)")
    p.add_argument("--lease-s", type=float, default=60.0, help="kbtool's lease_s (60)")
    p.add_argument("--start-method", default="fork", choices=["fork", "spawn", "forkserver"])
    p.add_argument("--dir", type=Path, default=None, help="where the temp queues go")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    add_smoke(p)
    args = apply_smoke(p.parse_args(argv), jobs=100, paced_jobs=10, workers=[1],
                       depths=[10, 100], claims=10)
    if args.jobs < 1 or args.paced_jobs < 0 or args.claims < 1 or min(args.workers) < 1:
        p.error("--jobs, --claims and --workers must be >= 1, --paced-jobs >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_bench = time.perf_counter()
    ctx = mp.get_context(args.start_method)
    load_start = loadavg()
    with tempfile.TemporaryDirectory(prefix="kbtool-qbench-", dir=args.dir) as tmp:
        root = Path(tmp)
        fs = os.statvfs(root)
        print(f"kbtool queue dispatch benchmark: python {platform.python_version()}, "
              f"{os.cpu_count()} cpus, queue dir {root} (fs block {fs.f_bsize}), "
              f"start method {args.start_method}")
        print(f"load average at start (1/5/15 min): {load_start}")
        print(f"kbtool worker: Worker.serve, worker_poll_s={args.worker_poll_s} lease_s="
              f"{args.lease_s} (idle wait {min(args.worker_poll_s, args.lease_s / 3):g} s on "
              f"inotify); polling design: one listing every {args.poll_s:g} s")

        rows: list[dict[str, Any]] = []
        for mode_interval, n in ((0.0, args.jobs), (args.paced_interval_ms / 1000,
                                                    args.paced_jobs)):
            if n == 0:
                continue
            for design in args.designs:
                for workers in args.workers:
                    t = time.perf_counter()
                    row = run_dispatch(ctx, design, workers, n, mode_interval, root, args)
                    row["run_s"] = time.perf_counter() - t
                    row["loadavg_after"] = loadavg()
                    rows.append(row)
                    print(f"  ran {design} {workers}w {row['mode']} {n} jobs in "
                          f"{row['run_s']:.1f} s (load {row['loadavg_after']})", flush=True)

        claim_rows = []
        depths = sorted(set(args.depths))
        if "kbtool" in args.designs:
            claim_rows = claim_cost_kbtool(root, depths, args.claims)
        list_rows = []
        if "polling" in args.designs:
            for depth in depths:
                list_rows.append(list_cost_polling(root, depth, max(20, args.claims // 4)))
        load_end = loadavg()

        figures = report(args, rows, claim_rows, list_rows, depths)
    figures["loadavg"] = {"start": load_start, "end": load_end}
    bench_s = time.perf_counter() - t_bench
    figures["bench_s"] = bench_s
    print(f"\nload average at end (1/5/15 min): {load_end}")
    print(f"benchmark wall time: {bench_s:.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe(figures), indent=2))
        print(f"figures written to {args.json}")
    lost = [r for r in rows if r["claimed_unique"] != r["jobs"] or r["claimed"] != r["jobs"]]
    return 1 if lost else 0


def report(args: argparse.Namespace, rows: list[dict[str, Any]],
           claim_rows: list[dict[str, Any]], list_rows: list[dict[str, Any]],
           depths: list[int]) -> dict[str, Any]:
    print("\n== Dispatch: latency = worker holds the job - Job.submitted; jobs/s = jobs / "
          "(last result - first submit) ==")
    print_dispatch(rows)
    print("burst: all jobs submitted as fast as one producer can (latency there is mostly "
          "queueing); paced: one job per interval,\n  queue near empty (the latency the "
          "targets are about). prod/s: the producer's own submit rate; submit p50: one "
          "submit call;\n  fifo: rank correlation of claim order with submit order (1 = "
          "first in, first out).")
    lost = [r for r in rows if r["claimed_unique"] != r["jobs"] or r["claimed"] != r["jobs"]]
    for r in lost:
        print(f"  !! {r['design']} {r['workers']}w {r['mode']}: {r['jobs']} jobs, "
              f"{r['claimed']} claims ({r['claimed_unique']} distinct), {r['results']} results")

    ratio = math.nan
    if claim_rows:
        print(f"\n== Claim cost, kbtool (µs per call, median of {args.claims}; depth kept "
              "constant by a re-submit after each claim; depths interleaved) ==")
        print(f"{'depth':>7s} {'measured':>8s} {'claim':>8s} {'claim p90':>9s} {'vs first':>8s} "
              f"{'finish':>8s} {'heartbeat':>9s} {'submit':>8s}")
        for c in claim_rows:
            c["claim_ratio_to_first"] = c["claim_us_median"] / claim_rows[0]["claim_us_median"]
            print(f"{c['depth']:7d} {c['measured_depth']:8d} {c['claim_us_median']:8.0f} "
                  f"{c['claim_us_p90']:9.0f} {c['claim_ratio_to_first']:7.2f}x "
                  f"{c['finish_us_median']:8.0f} {c['heartbeat_us_median']:9.0f} "
                  f"{c['submit_us_median']:8.0f}")
        lo, hi = claim_rows[0], claim_rows[-1]
        ratio = hi["claim_us_median"] / lo["claim_us_median"]
        print(f"claim ratio depth {hi['depth']}/{lo['depth']}: {ratio:.2f}x")
        print(f"claim on an empty queue: {hi['empty_fresh_us_median']:.0f} µs in a fresh "
              f"folder, {hi['empty_after_us_median']:.0f} µs in the folder that held "
              f"{hi['depth']} jobs")
        print("finish: result file + hard link + release; heartbeat: write_atomic (fsync) of "
              "the worker file, done by Worker.run_job after every job;\n  submit: "
              "write_atomic (fsync) of the job file.")
    list_ratio = math.nan
    if list_rows:
        print("\n== Polling design: one poll = list *.done + sort (µs) ==")
        print(f"{'depth':>7s} {'list+sort':>10s} {'p90':>10s} {'per job':>8s}")
        for c in list_rows:
            print(f"{c['depth']:7d} {c['list_sort_us_median']:10.0f} {c['list_sort_us_p90']:10.0f} "
                  f"{c['per_job_us']:8.2f}")
        list_ratio = list_rows[-1]["list_sort_us_median"] / list_rows[0]["list_sort_us_median"]
        print(f"list+sort ratio depth {list_rows[-1]['depth']}/{list_rows[0]['depth']}: "
              f"{list_ratio:.0f}x (per poll; per job it is "
              f"{list_rows[-1]['per_job_us'] / list_rows[0]['per_job_us']:.2f}x)")

    print("\n== Targets (kbtool, paced runs) ==")
    targets: dict[str, Any] = {}
    paced = [r for r in rows if r["design"] == "kbtool" and r["mode"] == "paced"]
    for r in paced:
        for q, limit in (("p50", TARGET_P50_MS), ("p99", TARGET_P99_MS)):
            met = r[f"lat_ms_{q}"] <= limit
            targets[f"paced_{r['workers']}w_{q}"] = met
            print(f"dispatch latency {q} ({r['workers']} worker{'s' * (r['workers'] > 1)}, "
                  f"{r['interval_ms']:g} ms spacing) {fmt(r[f'lat_ms_{q}'])} ms <= {limit:g} ms: "
                  f"{'MET' if met else 'NOT MET'}")
    if not paced:
        print("(no paced kbtool run: --paced-jobs 0 or kbtool not among --designs)")
    if claim_rows and len(depths) > 1:
        met = ratio <= TARGET_FLAT_RATIO
        targets["claim_flat"] = met
        print(f"claim cost flat: depth {depths[-1]}/{depths[0]} = {ratio:.2f}x <= "
              f"{TARGET_FLAT_RATIO:g}x: {'MET' if met else 'NOT MET'}")
    polls = [r for r in rows if r["design"] == "polling" and r["mode"] == "paced"]
    for r in polls:
        k = next((x for x in paced if x["workers"] == r["workers"]), None)
        if k:
            print(f"  for comparison, polling {r['workers']}w paced: p50 {fmt(r['lat_ms_p50'])} "
                  f"ms, p99 {fmt(r['lat_ms_p99'])} ms ({fmt(r['lat_ms_p50'] / k['lat_ms_p50'], '.0f')}x "
                  "kbtool's p50)")
    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dispatch": rows, "claim_cost_kbtool": claim_rows,
        "claim_ratio": ratio, "list_cost_polling": list_rows, "list_ratio": list_ratio,
        "targets": targets,
    }


if __name__ == "__main__":
    sys.exit(main())
