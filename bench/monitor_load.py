"""How fast ``kbtool monitor`` opens a large run and follows it.

Run:  python bench/monitor_load.py [--events 100000] [--tasks 250] [--size 120x40]
                                   [--repeats 3] [--json PATH] [--smoke]

A synthetic run directory is written to a temp dir: ``events.jsonl`` with ``--events``
events from ``--tasks`` KernelBench tasks searched at once (tree strategy, 10 chains a
phase, up to 4 tries a chain; LLM calls, evaluations with a realistic mix of statuses and
the kind's details, format errors, retried LLM errors, phase and task ends, the tasks'
events interleaved as in a real run), cut off mid-run, plus ``config.yaml`` and
``tasks.json``.  The events are the run store's own models (``kbtool.runs.events``), so the
log has the format a run writes today; ``--log-format 0.1`` writes the same events as kbtool
0.1 logged them (``step`` for ``sample``, no kind details: byte for byte the log this
benchmark wrote before the task-kind redesign), to compare with older code on the same bytes.
Then it measures:

  (a) reading and folding the whole log into the state model (``RunFollower.poll``);
  (b) opening the app headless (``App.run_test``), from ``MonitorApp(...)``:
      first render: the screen with the task table is drawn (the log is read after it,
      in chunks, each shown as it is folded);
      loaded: the whole log is folded and shown;
  (c) one refresh: 100 more events appended to the log, polled, folded and applied to the
      task table; the same with a drill-down open; and the worst case, 100 new steps in
      the open drill-down's tree.

Refreshes are timed in wall time and in this process's CPU time (all its threads), which a
busy host disturbs less.  Targets: first render under 1 s; every refresh in (c) under 50 ms
(wall).  A benchmark, not a test: exits 0 whether or not the targets are met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_common import add_smoke, apply_smoke

from kbtool.monitor.app import MonitorApp
from kbtool.monitor.screens.detail import DetailScreen
from kbtool.monitor.screens.tasks import TasksScreen
from kbtool.monitor.state import RunFollower
from kbtool.monitor.widgets.task_list import TaskList
from kbtool.runs.events import (
    Baseline,
    Eval,
    FormatError,
    LLMCall,
    LLMError,
    PhaseDone,
    RunEvent,
    RunStarted,
    TaskDone,
    TaskStarted,
    dump,
)

OPEN_TARGET_S = 1.0
REFRESH_TARGET_S = 0.050
STATUSES = (("incorrect", 0.30), ("compile_error", 0.25), ("runtime_error", 0.25),
            ("timeout", 0.05), ("rejected", 0.15))
SIZES = {"batch_size": 16, "in_channels": 3, "out_channels": 16, "depth": 16}


def _task_stream(task: str, rng: random.Random, phases: int, samples: int,
                 tries: int) -> list[RunEvent]:
    """One task's events in order."""
    base = {"eager": rng.uniform(0.05, 50.0)}
    base["compile"] = base["eager"] * rng.uniform(0.4, 1.3)
    out: list[RunEvent] = [TaskStarted(task=task)]
    out += [Baseline(task=task, mode=m, ms=ms) for m, ms in base.items()]
    out.append(LLMCall(sample=f"{task}/ideas", key="0" * 40, model="openai/gpt-4o",
                       prompt_tokens=900, completion_tokens=400, cost_usd=0.0062,
                       latency_s=7.5))
    for phase in range(phases):
        correct = 0
        best = None
        for agent in range(samples):
            for step in range(tries):
                sample = f"{task}/p{phase}/a{agent}/s{step}"
                if rng.random() < 0.02:
                    out.append(LLMError(sample=sample, error="rate limited", status=429,
                                        retryable=True))
                out.append(LLMCall(sample=sample, key="0" * 40, model="openai/gpt-4o",
                                   cached=rng.random() < 0.05,
                                   prompt_tokens=rng.randint(1500, 6000),
                                   completion_tokens=rng.randint(300, 3000),
                                   cost_usd=round(rng.uniform(0.005, 0.04), 6),
                                   latency_s=round(rng.uniform(3, 40), 3)))
                if rng.random() < 0.04:
                    out.append(FormatError(sample=sample, task=task))
                    continue
                ok = rng.random() < 0.3 + 0.15 * step
                runtime: float | None = None
                speedup: float | None = None
                if ok:
                    runtime = base["eager"] / rng.lognormvariate(0.0, 0.5)
                    status, speedup = "ok", base["eager"] / runtime
                    correct += 1
                    best = runtime if best is None else min(best, runtime)
                else:
                    status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
                # the kernelbench kind's details, as a real run logs them
                diff = [0.0] if ok else [0.05] if status == "incorrect" else []
                path = (f"tasks/{task.replace('/', '_')}/phase{phase}/agent{agent}/"
                        f"step{step}/candidate.py")
                out.append(Eval(sample=sample, task=task, status=status, runtime_ms=runtime,
                                baseline_ms=base["eager"], speedup=speedup,
                                flags=[] if ok else ["no_custom_kernel"], path=path,
                                details={"max_abs_diff": diff, "sizes": SIZES}))
                if ok:
                    break
        out.append(PhaseDone(sample=f"{task}/p{phase}", task=task, phase=phase,
                             correct=correct, best_runtime_ms=best))
    out.append(TaskDone(task=task, correct=True))
    return out


LEGACY_STEP = ("eval", "format_error", "phase_done")  # logged "step" where now "sample"


def legacy(event: dict[str, Any]) -> dict[str, Any]:
    """An event as kbtool 0.1 logged it."""
    if event["type"] == "run_started":
        return {k: v for k, v in event.items() if k not in ("mode", "baselines", "kinds")}
    if event["type"] in LEGACY_STEP:
        return {("step" if k == "sample" else k): v for k, v in event.items() if k != "details"}
    return event


def synthesize(run_dir: Path, events: int, tasks: int, seed: int = 0,
               log_format: str = "current") -> list[str]:
    """Write the run directory; returns the 200 lines that come after the log's end, for (c)."""
    rng = random.Random(seed)
    ids = [f"kernelbench/{1 + i % 3}/{i + 1}_Conv3d_GroupNorm_Mish_Task{i}" for i in range(tasks)]
    per_task = events / tasks
    phases = max(1, round(per_task / 45) + 1)  # ~45 events a phase; some spare
    streams = [_task_stream(t, rng, phases, 10, 4) for t in ids]
    env = {"device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "timer": "cuda_event",
           "sandbox": ["processes<=256 (cgroup)", "no network", "pid namespace"]}
    lines: list[RunEvent] = [RunStarted(
        tasks=ids, model="openai/gpt-4o", strategy="tree", env=env, mode="eager",
        baselines=["eager", "compile"], kinds=dict.fromkeys(ids, "kernelbench"))]
    positions = [0] * tasks
    live = list(range(tasks))
    while live and len(lines) < events + 200:
        i = rng.choice(live)
        lines.append(streams[i][positions[i]])
        positions[i] += 1
        if positions[i] == len(streams[i]):
            live.remove(i)
    t = 1.75e9
    text = []
    for seq, event in enumerate(lines, 1):
        t += rng.expovariate(1 / 0.05)
        data = dump(event)
        text.append(json.dumps({"seq": seq, "t": round(t, 3),
                                **(legacy(data) if log_format == "0.1" else data)}))
    run_dir.mkdir(parents=True, exist_ok=True)
    if log_format == "0.1":
        (run_dir / "config.yaml").write_text("mode: eager\nstrategy: tree\n")
        (run_dir / "tasks.json").write_text(json.dumps([{"id": i, "path": ""} for i in ids]))
    else:
        (run_dir / "config.yaml").write_text("mode: eager\nstrategy: tree\n"
                                             "baselines: [eager, compile]\n")
        (run_dir / "tasks.json").write_text(json.dumps(
            [{"id": i, "path": "", "kind": "kernelbench"} for i in ids]))
    (run_dir / "events.jsonl").write_text("\n".join(text[:events]) + "\n")
    return text[events:events + 200]


async def _frame(pilot: Any) -> None:
    """Until the screen has handled every pending message and drawn a frame.  This uses
    Textual internals (Pilot.pause() would also do, but it waits for the process to look
    idle, in steps of tens of ms, which would swamp the figure); falls back to pause()."""
    wait = getattr(pilot, "_wait_for_screen", None)
    draw = getattr(pilot.app.screen, "_on_timer_update", None)
    if wait is None or draw is None:
        await pilot.pause()
        return
    await wait()
    draw()


async def _until(condition: Any, timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > deadline:
            raise RuntimeError("monitor_load: the app did not get there in time")
        await asyncio.sleep(0.0005)


async def _app_figures(run_dir: Path, more: list[str], size: tuple[int, int],
                       events: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    start = time.perf_counter()
    app = MonitorApp(run_dir, interval=3600.0)  # polls after the first are triggered below
    async with app.run_test(size=size) as pilot:
        await _until(lambda: isinstance(app.screen, TasksScreen) and app.screen.is_mounted
                     and bool(app.screen.query_one(TaskList).rows))
        await _frame(pilot)
        figures["first_render_s"] = time.perf_counter() - start
        figures["events_at_first_render"] = app.state.events
        await _until(lambda: app.loaded)
        await _frame(pilot)
        figures["loaded_s"] = time.perf_counter() - start
        figures["chunks"] = app.polls
        if app.shown_events != events:
            raise RuntimeError(f"monitor_load: {app.shown_events} events shown, not {events}")
        table = app.screen.query_one(TaskList)
        figures["rows"] = len(table.rows)

        async def refresh(lines: list[str]) -> tuple[float, float]:
            """Wall and CPU time (this process, all threads: steadier on a busy host)."""
            with open(run_dir / "events.jsonl", "a") as handle:
                handle.write("\n".join(lines) + "\n")
            polls = app.polls
            begin, cpu = time.perf_counter(), time.process_time()
            app.poll_now()
            await _until(lambda: app.polls > polls)
            await _frame(pilot)
            return time.perf_counter() - begin, time.process_time() - cpu

        figures["refresh_s"], figures["refresh_cpu_s"] = await refresh(more[:100])
        figures["apply_s"] = app.last_apply_s
        # a drill-down open on the task that the next 100 events touch most
        nxt = [json.loads(line) for line in more[100:200]]
        touched = [e.get("task") or (e.get("sample") or "").split("/p")[0] for e in nxt]
        target = max(set(touched) & set(app.state.tasks), key=touched.count)
        app.push_screen(DetailScreen(target))
        await pilot.pause()
        figures["refresh_detail_s"], figures["refresh_detail_cpu_s"] = \
            await refresh(more[100:200])
        # worst case: 100 new steps (100 new chains) all in the open task's tree
        app.pop_screen()
        busiest = max(app.state.tasks.values(), key=lambda t: len(t.steps)).id
        app.push_screen(DetailScreen(busiest))
        await pilot.pause()
        figures["detail_steps"] = len(app.state.tasks[busiest].steps)
        extra = [json.dumps({"seq": 10**9 + i, "t": 1.8e9 + i,
                             **dump(LLMCall(sample=f"{busiest}/p99/a{i}/s0"))})
                 for i in range(100)]
        figures["refresh_worst_s"], figures["refresh_worst_cpu_s"] = await refresh(extra)
        await pilot.press("q")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=250)
    parser.add_argument("--size", default="120x40", help="terminal WIDTHxHEIGHT")
    parser.add_argument("--repeats", type=int, default=3,
                        help="times each figure is taken (the median is printed)")
    parser.add_argument("--log-format", choices=["current", "0.1"], default="current",
                        help="the log's format: today's (default) or kbtool 0.1's")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    add_smoke(parser)
    args = apply_smoke(parser.parse_args(), events=3000, tasks=20, repeats=1)
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="kbtool-monitor-bench-") as tmp:
        run_dir = Path(tmp) / "run"
        more = synthesize(run_dir, args.events, args.tasks, log_format=args.log_format)
        log = run_dir / "events.jsonl"
        size_mb = log.stat().st_size / 1e6
        folds, parse = [], []
        for _ in range(args.repeats):  # interleaved, so the host's noise hits both alike
            follower = RunFollower(run_dir)
            begin = time.perf_counter()
            count = follower.poll()
            folds.append(time.perf_counter() - begin)
            begin = time.perf_counter()
            RunFollower(run_dir).tail.read()
            parse.append(time.perf_counter() - begin)
        state = follower.state
        runs = []
        text = log.read_text()
        for _ in range(args.repeats):  # each on the log as it was written
            log.write_text(text)
            runs.append(asyncio.run(_app_figures(run_dir, more, (width, height), count)))
    figures = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {
        "events": count, "tasks": len(state.tasks), "log_mb": round(size_mb, 1),
        "log_format": args.log_format,
        "read_parse_s": statistics.median(parse), "fold_total_s": statistics.median(folds),
        **figures, "terminal": args.size, "repeats": args.repeats,
        "runs": runs,
    }
    load = " ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"synthetic log: {count} events, {len(state.tasks)} tasks, {size_mb:.1f} MB "
          f"({args.log_format} format); medians of {args.repeats}; load average {load} "
          f"(at the end)")
    print(f"(a) read + parse:                {result['read_parse_s'] * 1e3:8.1f} ms")
    print(f"(a) read + parse + fold (state): {result['fold_total_s'] * 1e3:8.1f} ms")
    print(f"(b) open app to first render:    {figures['first_render_s'] * 1e3:8.1f} ms "
          f"({figures['rows']:.0f} table rows, {args.size}; "
          f"{figures['events_at_first_render']:.0f} events folded by then)")
    print(f"(b) open app to whole log shown: {figures['loaded_s'] * 1e3:8.1f} ms "
          f"(in {figures['chunks']:.0f} chunks, each shown as it was folded)")
    print("(c) refreshes, wall (CPU of this process):")
    print(f"    after 100 events:            {figures['refresh_s'] * 1e3:8.1f} ms "
          f"({figures['refresh_cpu_s'] * 1e3:.1f} ms; of which applying to the screen "
          f"{figures['apply_s'] * 1e3:.1f} ms)")
    print(f"    same, drill-down open:       {figures['refresh_detail_s'] * 1e3:8.1f} ms "
          f"({figures['refresh_detail_cpu_s'] * 1e3:.1f} ms)")
    print(f"    worst case, 100 new steps in the open tree ({figures['detail_steps']:.0f} "
          f"steps): {figures['refresh_worst_s'] * 1e3:.1f} ms "
          f"({figures['refresh_worst_cpu_s'] * 1e3:.1f} ms)")
    open_ok = figures["first_render_s"] < OPEN_TARGET_S
    refresh_ok = max(figures["refresh_s"], figures["refresh_detail_s"],
                     figures["refresh_worst_s"]) < REFRESH_TARGET_S
    print(f"target first render < {OPEN_TARGET_S:g} s: {'met' if open_ok else 'NOT met'}; "
          f"target refresh < {REFRESH_TARGET_S * 1e3:g} ms (all three): "
          f"{'met' if refresh_ok else 'NOT met'}")
    result.update(open_target_met=open_ok, refresh_target_met=refresh_ok)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
