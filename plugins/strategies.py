"""Built-in search strategies: ``tree`` (phases and branches) and ``budget`` (LLM calls per
task)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from kbtool.plugin.hookspecs import hookimpl

if TYPE_CHECKING:
    from kbtool.search.engine import Candidate, SearchContext
    from kbtool.task.model import Task


def ideas(ctx: SearchContext, task: Task, count: int) -> list[str]:
    """The ideas step: one call, its list trimmed or repeated to ``count``."""
    from kbtool.search.prompts import parse_ideas

    reply = ctx.ask(task, f"{task.id}/ideas", [("user", ctx.render("ideas", task))],
                    {"kind": "ideas"})
    if reply is not None:
        ctx.store.write(ctx.store.layout.ideas(task.id), reply)
    return parse_ideas(reply or "", count)


def pick_seeds(candidates: list[Candidate], count: int) -> list[Candidate]:
    """Best per branch first, then the next best overall; at most ``count``."""
    ordered = sorted(candidates, key=lambda c: c.runtime_ms)
    firsts: dict[str, Candidate] = {}
    for candidate in ordered:
        firsts.setdefault(candidate.branch, candidate)
    seeds = list(firsts.values())
    seeds += [c for c in ordered if c not in seeds]
    return seeds[:count]


def improve_prompt(ctx: SearchContext, task: Task, seed: Candidate, idea: str) -> str:
    mode = ctx.kind(task).resolve_mode(ctx.config)
    base = ctx.record(task).baselines.get(mode) if mode else None
    speedup = seed.result.speedup or (base.median_ms / seed.runtime_ms if base else float("nan"))
    return ctx.render("improve", task, solution=seed.path.read_text(), idea=idea,
                      runtime_ms=f"{seed.runtime_ms:.4g}", speedup=f"{speedup:.2f}")


def tree(ctx: SearchContext, task: Task) -> None:
    """Parallel tree search: an ideas step, then ``num_phases`` phases of ``num_samples``
    chains.  Phase 0 writes from the reference, one idea per chain; later phases improve the
    best solutions of the phase before (``num_branches`` seeds, best per branch first).  A
    phase with no correct solution seeds the next from the reference again."""
    from kbtool.runs.events import PhaseDone
    from kbtool.search.engine import split_samples

    config = ctx.config
    idea_list = ideas(ctx, task, config.num_samples)
    seeds: list[Candidate] = []
    for phase in range(config.num_phases):
        if ctx.stopped:
            return
        jobs: list[Callable[[], Any]] = []
        if not seeds:
            for agent in range(config.num_samples):
                prompt = ctx.render("generate", task, idea=idea_list[agent])
                jobs.append(partial(ctx.chain, task, phase, agent, "reference", prompt))
        else:
            agent = 0
            for seed, share in zip(seeds, split_samples(config.num_samples, len(seeds)),
                                   strict=True):
                for _ in range(share):
                    prompt = improve_prompt(ctx, task, seed, idea_list[agent])
                    branch = f"p{seed.phase}a{seed.agent}"
                    jobs.append(partial(ctx.chain, task, phase, agent, branch, prompt))
                    agent += 1
        ctx.run_chains(jobs)
        correct = ctx.record(task).correct(phase)
        ctx.store.emit(PhaseDone(sample=f"{task.id}/p{phase}", task=task.id, phase=phase,
                                 correct=len(correct),
                                 best_runtime_ms=correct[0].result.runtime_ms if correct else None))
        seeds = pick_seeds(correct, config.num_branches) if correct else []


def budget(ctx: SearchContext, task: Task) -> None:
    """Query-budget search: ``query_budget`` LLM calls per task, ``num_samples`` chains at a
    time, each seeded from the best solutions so far (or the reference)."""
    config = ctx.config
    idea_list = ideas(ctx, task, config.num_samples)
    lock = threading.Lock()
    state = {"calls": 1, "next": 0}  # the ideas call counts

    def take() -> int | None:
        with lock:
            cost = config.max_fix_attempts + 1
            if state["calls"] + cost > config.query_budget or ctx.stopped:
                return None
            state["calls"] += cost
            state["next"] += 1
            return state["next"] - 1

    def worker() -> None:
        while (agent := take()) is not None:
            seeds = pick_seeds(ctx.record(task).correct(), config.num_branches)
            idea = idea_list[agent % len(idea_list)]
            if seeds:
                seed = seeds[agent % len(seeds)]
                ctx.chain(task, 0, agent, f"p{seed.phase}a{seed.agent}",
                          improve_prompt(ctx, task, seed, idea))
            else:
                ctx.chain(task, 0, agent, "reference", ctx.render("generate", task, idea=idea))

    ctx.run_chains([worker for _ in range(config.num_samples)])


@hookimpl
def register_search_strategies(register: Callable[[str, Any], None]) -> None:
    register("tree", tree)
    register("budget", budget)
