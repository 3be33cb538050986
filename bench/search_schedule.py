"""End-to-end time of a kbtool search against its lower bound, next to a barrier-per-round
schedule, in the same run.

Run:  python bench/search_schedule.py [--latency 0.5] [--tasks 4] [--samples 4] [--json PATH]

An OpenAI-compatible server (``tests/helpers/llm_server.py``) runs in this process on 127.0.0.1 and
answers every request after a fixed ``--latency``.  Its replies are candidates for a small
ReLU problem (``--tasks`` copies, ``source=dir``) whose evaluation time varies: each
candidate sleeps ``d`` seconds at import (in the evaluation's load stage, not in the timed
forward), ``d`` drawn from ``--min-sleep``..``--max-sleep`` by hashing what the candidate
is (task, phase, idea, fix attempt) -- never the prompt's measured numbers, so both schedules
get the same candidates.  A ``--wrong`` share of first tries is incorrect (``x + 1``); every
fix is correct.

Two schedules run back to back, each with a fresh run dir and cache dir (no LLM answers
or baselines carried over) and the same server settings:

* ``tree``: kbtool's strategy.  A chain's fix prompt goes out when its evaluation returns;
  only a task's phases wait for each other.
* ``tree_barrier``: the same phases, prompts and request keys, but each round of a phase
  waits for all chains (PIKE's schedule): send all the round's prompts, wait for all replies,
  evaluate them all, wait, then send the fix prompts of the failures.  Registered here, for
  this process only, as a strategy plugin.

The lower bound of one run comes from its own event log, the server's request times and
the wall times of its evaluator calls (``Evaluator.__init__``/``baseline``/``evaluate`` and
``LocalBackend.get`` are wrapped in this process):

* S  = evaluator start-up (the shortest ``Evaluator()`` of the run): nothing is evaluated
  before one exists;
* CP = max over tasks of  baseline + ideas-call latency + sum over phases of the longest
  chain, a chain (task, phase, agent) costing the sum over its steps of LLM latency + the
  evaluation wall time of its candidate;
* EV = (all evaluation + baseline wall time) / eval_workers;
* LL = all LLM latency / num_workers;
* bound = max(S + CP, S + EV, LL)  (the target is checked against this one);
* tight = the same with two more limits that hold for any schedule: a phase of a task
  lasts at least its first reply + its evaluations / eval_workers, and no candidate is
  evaluated before some task's ideas call and first reply are back.

LLM latency is the server's time for the request (``--latency`` plus HTTP handling); the
client's ``latency_s`` of the ``llm_call`` events is kept in the JSON.  Evaluation wall
time is the whole ``Evaluator.evaluate`` call (fork, load, checks, timing), so kbtool's
per-candidate harness cost is inside the bound; what the ratio shows is the schedule plus
the run's own overhead (set-up, teardown, files, event log, threads).  The report splits
wall - bound into set-up beyond one evaluator start-up, search beyond its bound and
teardown, and counts evaluator-seconds idle while a candidate waited for an evaluator
(hand-off overhead) or with none waiting (the schedule had nothing to evaluate).

The openai package is imported (and a client built) once before the runs: kbtool's openai
provider does that on its first call, which would charge it to the first schedule only.

This is a benchmark, not a test: it prints figures and exits 0 whether the target is met
or not (1 if a run failed).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import math
import os
import platform
import re
import sys
import tempfile
import threading
import time
from collections import defaultdict
from functools import partial
from pathlib import Path
from typing import Any

from bench_common import add_smoke, apply_smoke, json_safe
from bench_common import fmt as _fmt

from kbtool.plugin.hookspecs import hookimpl


def fmt(value: float | None, spec: str = ".1f") -> str:
    return _fmt(value, spec)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.helpers.llm_server

TARGET_RATIO = 1.15

PROBLEM = '''"""Bench task {n}: elementwise ReLU (bench task {n})."""
import torch
import torch.nn as nn

batch_size = 16
dim = 1024


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x)


def get_inputs():
    return [torch.randn(batch_size, dim)]


def get_init_inputs():
    return []
'''

CANDIDATE = '''```python
import time

import torch
import torch.nn as nn

# bench-candidate level={level} task={task} idea={idea} attempt={attempt}
time.sleep({sleep:.3f})


class ModelNew(nn.Module):
    def forward(self, x):
        return {body}
```
'''


# -- the server's replies -------------------------------------------------------------------
class Replies:
    """What the server answers: a pure function of the conversation, thread-safe."""

    def __init__(self, min_sleep: float, max_sleep: float, wrong: float) -> None:
        self.min_sleep, self.max_sleep, self.wrong = min_sleep, max_sleep, wrong

    @staticmethod
    def _unit(key: str, salt: str) -> float:
        digest = hashlib.sha256(f"{salt}|{key}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2 ** 64

    def plan(self, task: str, level: int, idea: str, attempt: int) -> tuple[float, bool]:
        """(sleep at import, wrong?) of a candidate."""
        key = f"{task}|{level}|{idea}|{attempt}"
        sleep = self.min_sleep + (self.max_sleep - self.min_sleep) * self._unit(key, "sleep")
        return sleep, attempt == 0 and self._unit(key, "wrong") < self.wrong

    def __call__(self, body: dict[str, Any]) -> str:
        users = [m["content"] for m in body["messages"] if m.get("role") == "user"]
        first, attempt = users[0], len(users) - 1
        task = re.search(r"bench task (\d+)", first)
        task_no = task.group(1) if task else "?"
        if "distinct ideas" in first:
            return "\n".join(f"{k}. Approach {k}: vectorise differently (variant {k})."
                             for k in range(1, 11))
        idea = re.search(r"Focus on this idea: (.*)", first)
        idea_text = idea.group(1).strip() if idea else "?"
        seed = re.search(r"bench-candidate level=(\d+)", first)  # an improve prompt
        level = int(seed.group(1)) + 1 if seed else 0
        sleep, wrong = self.plan(task_no, level, idea_text, attempt)
        tag = re.sub(r"\W+", "_", idea_text)[:40]
        return CANDIDATE.format(level=level, task=task_no, idea=tag, attempt=attempt,
                                sleep=sleep, body="x + 1.0" if wrong else "torch.relu(x)")


# -- the barrier-per-round schedule ------------------------------------------------------------
def tree_barrier(ctx: Any, task: Any) -> None:
    """``tree`` with a barrier per round: all replies of a round, then all its evaluations."""
    from kbtool.runs.events import FormatError, PhaseDone
    from kbtool.search.engine import Candidate, split_samples
    from kbtool_plugins.strategies import ideas, improve_prompt, pick_seeds

    config = ctx.config
    kind = ctx.kind(task)
    layout = ctx.store.layout
    idea_list = ideas(ctx, task, config.num_samples)
    seeds: list[Any] = []

    def ask(phase: int, step: int, chain: dict[str, Any]) -> None:
        agent, messages = chain["agent"], chain["messages"]
        where = layout.step_dir(task.id, phase, agent, step)
        sample = f"{task.id}/p{phase}/a{agent}/s{step}"
        chain.update(where=where, sample=sample, code=None)
        ctx.store.write(where / "prompt.md", messages[-1][1])
        reply = ctx.ask(task, sample, messages,
                        {"kind": "generate" if step == 0 else "fix", "phase": phase,
                         "agent": agent, "attempt": step,
                         "seeded": chain["branch"] != "reference"})
        if reply is None:
            chain["done"] = True
            return
        ctx.store.write(where / "response.md", reply)
        messages.append(("assistant", reply))
        chain["code"] = kind.extract_candidate(reply)
        if chain["code"] is None:
            ctx.store.emit(FormatError(sample=sample, task=task.id))
            messages.append(("user", ctx.render("format_error", task)))

    def evaluate(phase: int, step: int, chain: dict[str, Any]) -> None:
        code, where, agent = chain["code"], chain["where"], chain["agent"]
        path = ctx.store.write(layout.candidate(where, kind.candidate_suffix), code)
        result = ctx.evaluate(task, code, path, chain["sample"])
        ctx.store.write(where / "eval.json", result.model_dump_json(indent=2))
        candidate = Candidate(task.id, phase, agent, step, chain["branch"], path, result)
        ctx.record(task).add(candidate)
        if candidate.correct:
            chain["done"] = True
        else:
            chain["messages"].append(("user", ctx.render("fix", task, code=code,
                                                         feedback=ctx.feedback(result))))

    for phase in range(config.num_phases):
        if ctx.stopped:
            return
        chains: list[dict[str, Any]] = []
        if not seeds:
            for agent in range(config.num_samples):
                chains.append({"agent": agent, "branch": "reference", "messages": [
                    ("user", ctx.render("generate", task, idea=idea_list[agent]))]})
        else:
            for seed, share in zip(seeds, split_samples(config.num_samples, len(seeds)),
                                   strict=True):
                for _ in range(share):
                    agent = len(chains)
                    chains.append({"agent": agent, "branch": f"p{seed.phase}a{seed.agent}",
                                   "messages": [("user", improve_prompt(
                                       ctx, task, seed, idea_list[agent]))]})
        for step in range(config.max_fix_attempts + 1):
            live = [c for c in chains if not c.get("done")]
            if not live or ctx.stopped:
                break
            ctx.run_chains([partial(ask, phase, step, c) for c in live])          # barrier
            ctx.run_chains([partial(evaluate, phase, step, c) for c in live
                            if not c.get("done") and c["code"] is not None])     # barrier
        correct = ctx.record(task).correct(phase)
        ctx.store.emit(PhaseDone(sample=f"{task.id}/p{phase}", task=task.id, phase=phase,
                                 correct=len(correct),
                                 best_runtime_ms=correct[0].result.runtime_ms if correct
                                 else None))
        seeds = pick_seeds(correct, config.num_branches) if correct else []


class BarrierPlugin:
    """Registers ``tree_barrier`` on kbtool's plugin manager, for this process only."""

    @hookimpl
    def register_search_strategies(self, register: Any) -> None:
        register("tree_barrier", tree_barrier)


# -- instrumentation ----------------------------------------------------------------------------
class Probe:
    """Wall time of every evaluator start-up, baseline and evaluation in this process, and
    of every lease of the evaluator pool (asked for, granted, given back)."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._local = threading.local()
        self._saved: dict[str, Any] = {}

    def _add(self, **row: Any) -> None:
        with self._lock:
            self.rows.append(row)

    def install(self) -> None:
        from kbtool.evaluation.backend import LocalBackend
        from kbtool.evaluation.evaluator import Evaluator

        probe = self
        init, baseline, evaluate = Evaluator.__init__, Evaluator.baseline, Evaluator.evaluate
        self._saved = {"__init__": init, "baseline": baseline, "evaluate": evaluate}

        def timed_init(self: Any, config: Any) -> None:
            t0 = time.time()
            init(self, config)
            probe._add(kind="startup", evaluator=id(self), t0=t0, t1=time.time())

        def timed_baseline(self: Any, task: Any, mode: str, config: Any = None) -> Any:
            if getattr(probe._local, "inside", False):  # evaluate()'s own (cached) lookup
                return baseline(self, task, mode, config)
            t0 = time.time()
            try:
                return baseline(self, task, mode, config)
            finally:
                probe._add(kind="baseline", evaluator=id(self), task=task.id, t0=t0,
                           t1=time.time())

        def timed_evaluate(self: Any, task: Any, solution: Path, config: Any = None) -> Any:
            probe._local.inside = True
            t0 = time.time()
            try:
                return evaluate(self, task, solution, config)
            finally:
                probe._local.inside = False
                t_req, _ = getattr(probe._local, "lease", (t0, t0))
                probe._add(kind="eval", evaluator=id(self), task=task.id,
                           path=str(solution), t_req=t_req, t0=t0, t1=time.time())

        get = LocalBackend.get
        self._saved_get = get

        @contextlib.contextmanager
        def timed_get(self: Any) -> Any:
            t_req = time.time()
            with get(self) as evaluator:
                t0 = time.time()
                probe._local.lease = (t_req, t0)
                try:
                    yield evaluator
                finally:
                    probe._add(kind="lease", evaluator=id(evaluator), t_req=t_req, t0=t0,
                               t1=time.time())

        Evaluator.__init__ = timed_init
        Evaluator.baseline = timed_baseline
        Evaluator.evaluate = timed_evaluate
        LocalBackend.get = timed_get

    def uninstall(self) -> None:
        from kbtool.evaluation.backend import LocalBackend
        from kbtool.evaluation.evaluator import Evaluator

        for name, fn in self._saved.items():
            setattr(Evaluator, name, fn)
        LocalBackend.get = self._saved_get

    def take(self) -> list[dict[str, Any]]:
        with self._lock:
            rows, self.rows = self.rows, []
        return rows


# -- analysis -----------------------------------------------------------------------------------
def parse_sample(sample: str) -> tuple[str, int, int, int] | None:
    parts = sample.rsplit("/", 3)
    if len(parts) != 4 or not all(re.fullmatch(p + r"\d+", s) for p, s in
                                  zip("pas", parts[1:], strict=True)):
        return None
    return parts[0], int(parts[1][1:]), int(parts[2][1:]), int(parts[3][1:])


def merge(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def analyse(run_dir: Path, rows: list[dict[str, Any]], server_records: list[Any], config: Any,
            wall: float, t_call: float, t_return: float) -> dict[str, Any]:
    from kbtool.runs.events import Eval, LLMCall, parse
    from kbtool.runs.store import read_events

    # Typed (kbtool.runs.events): a renamed field fails here, not as a wrong figure.
    events = [e for e in map(parse, read_events(run_dir)) if e is not None]
    first = {e.type: e.t for e in reversed(events)}
    # LLM latency of a call: the server's time for its request (the fixed latency plus HTTP
    # handling), matched by the messages; latency_s of the llm_call event (the client's
    # view, with the client's own overhead) is kept beside it.
    served: dict[str, list[float]] = defaultdict(list)
    for record in server_records:
        if record.completed and record.end is not None:
            messages = [[m["role"], m["content"]] for m in record.body["messages"]]
            served[json.dumps(messages)].append(record.end - record.start)
    latency: dict[str, float] = {}
    client_latency: dict[str, float] = {}
    for e in events:
        if isinstance(e, LLMCall):
            client_latency[e.sample] = e.latency_s
            request = json.loads((run_dir / "calls" / f"{e.key}.json").read_text())["request"]
            found = served.get(json.dumps([list(m) for m in request["messages"]]))
            latency[e.sample] = found.pop(0) if found else e.latency_s
    eval_wall = {r["path"]: r["t1"] - r["t0"] for r in rows if r["kind"] == "eval"}
    baseline = defaultdict(float)
    for r in rows:
        if r["kind"] == "baseline":
            baseline[r["task"]] += r["t1"] - r["t0"]
    startups = [r["t1"] - r["t0"] for r in rows if r["kind"] == "startup"]

    chains: dict[tuple[str, int, int], float] = defaultdict(float)
    phase_evals: dict[tuple[str, int], float] = defaultdict(float)
    first_reply: dict[tuple[str, int], float] = {}
    for sample, lat in latency.items():
        where = parse_sample(sample)
        if where:
            chains[where[:3]] += lat
            if where[3] == 0:
                first_reply[where[:2]] = min(first_reply.get(where[:2], math.inf), lat)
    for e in events:
        if isinstance(e, Eval):
            where = parse_sample(e.sample)
            if where:
                took = eval_wall.get(str(run_dir / (e.path or "")), 0.0)
                chains[where[:3]] += took
                phase_evals[where[:2]] += took
    w = config.eval_workers
    tasks = sorted({t for t, _, _ in chains} | set(baseline))
    per_task = {}
    for task in tasks:
        phases = sorted({p for t, p, _ in chains if t == task})
        longest = [max(v for (t, p, _), v in chains.items() if t == task and p == ph)
                   for ph in phases]
        # A phase also lasts at least its first reply + its evaluations over the evaluators.
        packed = [first_reply.get((task, ph), 0.0) + phase_evals[(task, ph)] / w
                  for ph in phases]
        head = baseline[task] + latency.get(f"{task}/ideas", 0.0)
        per_task[task] = {"baseline_s": baseline[task],
                          "ideas_s": latency.get(f"{task}/ideas", 0.0),
                          "longest_chain_s": longest, "phase_packed_s": packed,
                          "cp_s": head + sum(longest),
                          "cp_tight_s": head + sum(map(max, longest, packed))}
    evals_s = sum(eval_wall.values())
    s = min(startups) if startups else 0.0
    cp = max((v["cp_s"] for v in per_task.values()), default=0.0)
    ev = (evals_s + sum(baseline.values())) / w
    ll = sum(latency.values()) / config.num_workers
    bound = max(s + cp, s + ev, ll)
    # Tighter: no candidate exists before a task's ideas call and first reply are back.
    t0 = min((latency.get(f"{t}/ideas", 0.0) + first_reply.get((t, 0), 0.0) for t in tasks),
             default=0.0)
    cp_tight = max((v["cp_tight_s"] for v in per_task.values()), default=0.0)
    ev_tight = max(ev, t0 + evals_s / w)
    tight = max(s + cp_tight, s + ev_tight, ll)

    # Evaluator idle time in the search (worker-seconds), split into idle while a candidate
    # or baseline waited for an evaluator (hand-off overhead) and idle with none waiting.
    t_start, t_end = first.get("run_started", t_call), t_return
    for e in events:
        if e.type == "run_finished":
            t_end = e.t
    leases = [r for r in rows if r["kind"] == "lease"]
    # The search loop's own time around an evaluation: from the llm_call event of the reply
    # to asking for an evaluator (files, code extraction, hashing), and from the end of the
    # evaluation to its eval event (result files, event log).
    by_path = {r["path"]: r for r in rows if r["kind"] == "eval"}
    reply_t = {e.sample: e.t for e in events if isinstance(e, LLMCall)}
    before, after = [], []
    waits: dict[str, list[float]] = {"first_try": [], "fix": []}
    for e in events:
        r = by_path.get(str(run_dir / (e.path or ""))) if isinstance(e, Eval) else None
        if r is not None and e.sample in reply_t:
            before.append(r["t_req"] - reply_t[e.sample])
            after.append(e.t - r["t1"])
            where = parse_sample(e.sample)
            if where:
                waits["fix" if where[3] else "first_try"].append(r["t0"] - r["t_req"])
    idle = idle_split(leases, config.eval_workers, t_start, t_end)
    excess = {"setup_beyond_startup_s": (t_start - t_call) - s,
              "search_beyond_bound_s": (t_end - t_start) - (bound - s),
              "search_beyond_tight_s": (t_end - t_start) - (tight - s),
              "teardown_s": t_return - t_end}
    return {
        "wall_s": wall, "bound_s": bound, "ratio": wall / bound if bound else math.nan,
        "tight_bound_s": tight, "tight_ratio": wall / tight if tight else math.nan,
        "cp_tight_s": cp_tight, "eval_resource_tight_s": ev_tight,
        "startup_s": s, "startups_s": startups, "cp_s": cp, "eval_resource_s": ev,
        "llm_resource_s": ll,
        "setup_s": t_start - t_call, "search_s": t_end - t_start,
        "teardown_s": t_return - t_end,
        "llm_calls": len(latency), "evaluations": len(eval_wall),
        "eval_wall_total_s": evals_s, "baseline_total_s": sum(baseline.values()),
        "llm_latency_total_s": sum(latency.values()),
        "llm_client_latency_total_s": sum(client_latency.values()),
        "llm_client_overhead_max_s": max((client_latency[k] - latency[k] for k in latency),
                                         default=0.0),
        "evaluator_idle_s": idle, "excess_s": excess,
        "loop_overhead_s": {"reply_to_eval_request": spread(before),
                            "eval_to_event": spread(after)},
        "queue_wait_s": {"total": sum(r["t0"] - r["t_req"] for r in leases),
                         "max": max((r["t0"] - r["t_req"] for r in leases), default=0.0),
                         "first_try": spread(waits["first_try"]), "fix": spread(waits["fix"])},
        "per_task": per_task,
    }


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"n": len(ordered), "median": ordered[len(ordered) // 2] if ordered else math.nan,
            "max": ordered[-1] if ordered else math.nan, "total": sum(ordered)}


def idle_split(leases: list[dict[str, Any]], workers: int, t_start: float,
               t_end: float) -> dict[str, float]:
    """Idle evaluator-seconds in [t_start, t_end]: ``queued`` while something waited for an
    evaluator, else ``head`` (before the first lease), ``tail`` (after the last one ended)
    and ``between``."""
    points: list[tuple[float, int, int]] = []  # (time, d_waiting, d_leased)
    for r in leases:
        points += [(r["t_req"], 1, 0), (r["t0"], -1, 1), (r["t1"], 0, -1)]
    points.sort()
    out = {"queued": 0.0, "head": 0.0, "between": 0.0, "tail": 0.0}
    first_grant = min((r["t0"] for r in leases), default=t_end)
    last_end = max((r["t1"] for r in leases), default=t_start)
    waiting = leased = 0
    cursor = t_start
    for t, dw, dl in [*points, (t_end, 0, 0)]:
        a, b = max(cursor, t_start), min(t, t_end)
        if b > a:
            free = max(workers - leased, 0)
            queued = min(free, waiting)
            out["queued"] += queued * (b - a)
            where = "head" if b <= first_grant else "tail" if a >= last_end else "between"
            out[where] += (free - queued) * (b - a)
        cursor = max(cursor, t)
        waiting += dw
        leased += dl
    out["total"] = sum(out.values())
    return out


# -- one run ----------------------------------------------------------------------------------
def run_schedule(name: str, args: argparse.Namespace, work: Path, tasks_dir: Path,
                 server: Any, probe: Probe, index: int) -> dict[str, Any]:
    from kbtool.config import load_config
    from kbtool.runs.summary import RunSummary
    from kbtool.search import run

    base = work / f"{index}-{name}"
    config = load_config({
        "source": "dir", "tasks_dir": str(tasks_dir), "device": "cpu",
        "model_name": "openai/bench", "strategy": name,
        "num_samples": args.samples, "num_phases": args.phases,
        "max_fix_attempts": args.fix_attempts, "num_branches": args.samples,
        "num_workers": args.num_workers, "eval_workers": args.eval_workers,
        "baselines": ["eager"], "cache_dir": str(base / "cache"),
        "data_dir": str(base), "run_dir": str(base / "run"),
        "max_retries": 0, "speedup_flag_threshold": 1e9,
    }, profile="quick")
    server.reset()
    probe.take()
    t_call = time.time()
    progress = io.StringIO()  # kbtool run's progress lines: shown with --verbose or on failure
    t0 = time.perf_counter()
    with contextlib.nullcontext() if args.verbose else contextlib.redirect_stderr(progress):
        summary = run.start(config, [])
    wall = time.perf_counter() - t0
    t_return = time.time()
    figures = analyse(base / "run", probe.take(), list(server.requests), config, wall, t_call,
                      t_return)
    figures["schedule"] = name
    summary = RunSummary.model_validate(summary)  # a dry run's dict never comes here
    figures["status"] = summary.status
    figures["server_requests"] = len(server.completed())
    figures["server_max_active"] = server.max_active
    figures["tasks_correct"] = sum(t.correct for t in summary.tasks.values())
    figures["run_dir"] = str(base / "run")
    figures["failed"] = (summary.status != "finished" or
                         figures["tasks_correct"] != len(summary.tasks) or
                         summary.totals["llm_errors"] > 0)
    if figures["failed"]:
        print(progress.getvalue()[-3000:], file=sys.stderr)
    return figures






def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--latency", type=float, default=0.5, help="seconds per LLM reply (0.5)")
    p.add_argument("--tasks", type=int, default=4, help="copies of the problem (4)")
    p.add_argument("--samples", type=int, default=4, help="num_samples (4)")
    p.add_argument("--phases", type=int, default=2, help="num_phases (2)")
    p.add_argument("--fix-attempts", type=int, default=1, help="max_fix_attempts (1)")
    p.add_argument("--num-workers", type=int, default=8, help="concurrent LLM calls (8)")
    p.add_argument("--eval-workers", type=int, default=1, help="concurrent evaluations (1)")
    p.add_argument("--min-sleep", type=float, default=0.1,
                   help="shortest import-time sleep of a candidate (0.1 s)")
    p.add_argument("--max-sleep", type=float, default=1.5,
                   help="longest import-time sleep of a candidate (1.5 s)")
    p.add_argument("--wrong", type=float, default=0.4,
                   help="share of first tries that are incorrect (0.4)")
    p.add_argument("--schedules", default="tree,tree_barrier",
                   help="schedules in the order run (default tree,tree_barrier)")
    p.add_argument("--repeats", type=int, default=1,
                   help="rounds of all schedules; the order alternates each round (1)")
    p.add_argument("--keep", type=Path, default=None,
                   help="keep the run directories under this folder")
    p.add_argument("--verbose", action="store_true", help="kbtool's progress lines")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    add_smoke(p)
    args = apply_smoke(p.parse_args(argv), tasks=1, samples=2, phases=1, latency=0.05,
                       max_sleep=0.2, repeats=1)
    if not 1 <= args.samples <= 10:
        p.error("--samples must be 1..10 (the ideas reply has 10 ideas; more would repeat "
                "candidates, which kbtool evaluates once)")
    if min(args.tasks, args.phases, args.num_workers, args.eval_workers, args.repeats) < 1 \
            or args.fix_attempts < 0 or not 0 <= args.min_sleep <= args.max_sleep:
        p.error("counts must be >= 1, --fix-attempts >= 0, 0 <= --min-sleep <= --max-sleep")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_bench = time.perf_counter()
    args.load_start = os.getloadavg()[0]
    schedules = [s.strip() for s in args.schedules.split(",") if s.strip()]
    with tempfile.TemporaryDirectory(prefix="kbtool-sched-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        os.environ["KBTOOL_CONFIG"] = str(work / "no-user-config.yaml")
        tasks_dir = work / "tasks"
        tasks_dir.mkdir(exist_ok=True)
        for n in range(1, args.tasks + 1):
            (tasks_dir / f"{n}_BenchReLU.py").write_text(PROBLEM.format(n=n))

        from kbtool.plugin import manager as plugins
        from tests.helpers.llm_server import LLMServer

        plugins.load_plugins()
        plugins.pm.register(BarrierPlugin(), name="bench_tree_barrier")
        probe = Probe()
        probe.install()
        replies = Replies(args.min_sleep, args.max_sleep, args.wrong)
        results: list[dict[str, Any]] = []
        try:
            with LLMServer(replies=replies, latency=args.latency) as server:
                os.environ["OPENAI_BASE_URL"] = server.base_url
                os.environ["OPENAI_API_KEY"] = "bench"
                # kbtool's openai provider imports openai on its first call, and openai loads
                # more modules on its first request; only the first schedule would pay that,
                # so it is paid here, for both (each run still builds its own client).
                t0 = time.perf_counter()
                import openai

                t1 = time.perf_counter()
                client = openai.OpenAI(api_key="bench", base_url=server.base_url, max_retries=0)
                t2 = time.perf_counter()
                client.chat.completions.create(model="bench", messages=[
                    {"role": "user", "content": "warm-up"}])
                warm = {"import_openai_s": t1 - t0, "client_s": t2 - t1,
                        "first_request_overhead_s": time.perf_counter() - t2 - args.latency}
                index = 0
                for rep in range(args.repeats):
                    order = schedules if rep % 2 == 0 else list(reversed(schedules))
                    for name in order:
                        print(f"running {name} (round {rep + 1}) ...", file=sys.stderr,
                              flush=True)
                        results.append(run_schedule(name, args, work, tasks_dir, server,
                                                    probe, index))
                        index += 1
        finally:
            probe.uninstall()
            plugins.pm.unregister(name="bench_tree_barrier")
        figures = report(args, results)
        figures["warmup"] = warm
        print(f"not in these figures (paid once before the runs): import openai "
              f"{warm['import_openai_s']:.2f} s, first client {warm['client_s']:.2f} s, first "
              f"request {warm['first_request_overhead_s']:.2f} s beyond the latency")
    bench_s = time.perf_counter() - t_bench
    print(f"\nbenchmark wall time: {bench_s:.1f} s")
    figures["bench_wall_s"] = bench_s
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_safe(figures), indent=2, default=str))
        print(f"figures written to {args.json}")
    return 1 if any(r["failed"] for r in results) else 0


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> dict[str, Any]:
    print(f"\nkbtool search schedule benchmark: python {platform.python_version()}, "
          f"{os.cpu_count()} cpus, load average {args.load_start:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"settings: {args.tasks} tasks, num_samples={args.samples}, num_phases={args.phases}, "
          f"max_fix_attempts={args.fix_attempts}, num_workers={args.num_workers}, "
          f"eval_workers={args.eval_workers}; LLM latency {args.latency:g} s per reply; "
          f"candidates sleep {args.min_sleep:g}-{args.max_sleep:g} s at import, "
          f"{args.wrong:.0%} of first tries wrong")
    print("bound = max(S + CP, S + EV, LL): S evaluator start-up, CP longest task path "
          "(baseline + ideas call + per phase the\n  longest chain of LLM latency + evaluation "
          "wall), EV evaluation+baseline wall / eval_workers, LL LLM latency / num_workers;\n"
          "  LLM latency = the server's time per request; evaluation wall = the whole "
          "Evaluator.evaluate call\ntight = the same with two more lower limits: a phase "
          "lasts at least its first reply + its evaluations / eval_workers,\n  and no "
          "candidate is evaluated before the first ideas call + first reply are back")
    head = (f"{'schedule':13s} {'wall s':>6s} {'bound':>6s} {'ratio':>6s} {'tight':>6s} "
            f"{'ratio':>6s} {'S':>4s} {'CP':>5s} {'EV':>5s} {'LL':>5s} {'setup':>5s} "
            f"{'search':>6s} {'down':>4s} {'idle q/o':>9s} {'calls':>5s} {'evals':>5s}")
    print("\n" + head)
    for r in results:
        idle = r["evaluator_idle_s"]
        print(f"{r['schedule']:13s} {r['wall_s']:6.1f} {r['bound_s']:6.1f} {r['ratio']:6.3f} "
              f"{r['tight_bound_s']:6.1f} {r['tight_ratio']:6.3f} {r['startup_s']:4.1f} "
              f"{r['cp_s']:5.1f} {r['eval_resource_s']:5.1f} {r['llm_resource_s']:5.1f} "
              f"{r['setup_s']:5.1f} {r['search_s']:6.1f} {r['teardown_s']:4.1f} "
              f"{idle['queued']:4.1f}/{idle['total'] - idle['queued']:<4.1f} "
              f"{r['llm_calls']:5d} {r['evaluations']:5d}")
    print("wall = setup (run.start() to run_started) + search (to run_finished) + down (to "
          "the return);\nidle q/o: evaluator-seconds idle in the search while a candidate "
          "waited for an evaluator / with none waiting")
    for r in results:
        x, idle = r["excess_s"], r["evaluator_idle_s"]
        print(f"{r['schedule']}: wall - bound = {r['wall_s'] - r['bound_s']:.1f} s = set-up "
              f"beyond one evaluator start-up {x['setup_beyond_startup_s']:.1f} + search "
              f"beyond its bound {x['search_beyond_bound_s']:.1f} (beyond the tight one "
              f"{x['search_beyond_tight_s']:.1f}) + teardown {x['teardown_s']:.1f}; evaluators "
              f"idle with nothing waiting: head {idle['head']:.1f}, between "
              f"{idle['between']:.1f}, tail {idle['tail']:.1f}; waits for an evaluator: "
              f"longest {r['queue_wait_s']['max']:.1f}, fix candidates "
              f"{r['queue_wait_s']['fix']['total']:.1f} in all")
    for r in results:
        if r["failed"]:
            print(f"warning: {r['schedule']} run did not finish cleanly: status {r['status']}, "
                  f"{r['tasks_correct']} tasks correct ({r['run_dir']})")

    def mean(name: str, key: str) -> float:
        vals = [r[key] for r in results if r["schedule"] == name]
        return sum(vals) / len(vals) if vals else math.nan

    tree_ratio = mean("tree", "ratio")
    speedup = mean("tree_barrier", "wall_s") / mean("tree", "wall_s")
    met = tree_ratio <= TARGET_RATIO
    print()
    print(f"tree: ratio {fmt(tree_ratio, '.3f')} <= {TARGET_RATIO}: "
          f"{'MET' if met else 'NOT MET'} (against the tight bound: "
          f"{fmt(mean('tree', 'tight_ratio'), '.3f')})")
    search_speedup = mean("tree_barrier", "search_s") / mean("tree", "search_s")
    print(f"tree over tree_barrier: {fmt(speedup, '.2f')}x faster end to end, "
          f"{fmt(search_speedup, '.2f')}x in the search alone (run_started to run_finished, "
          f"without the evaluator start-up); barrier ratio "
          f"{fmt(mean('tree_barrier', 'ratio'), '.3f')}")
    return {"settings": vars(args) | {"keep": str(args.keep), "json": str(args.json)},
            "runs": results, "tree_ratio": tree_ratio,
            "tree_tight_ratio": mean("tree", "tight_ratio"), "target_ratio": TARGET_RATIO,
            "target_met": met, "tree_speedup_over_barrier": speedup,
            "tree_search_speedup_over_barrier": search_speedup}


if __name__ == "__main__":
    sys.exit(main())
