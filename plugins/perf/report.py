"""What ``kbtool report`` adds for perf tasks: the 3-way table, Opt@K, the speed ratio.

- **3-way table**, per task: the best candidate's speedup over the baseline, the human
  release's, and agent vs human, each with its interval, and whether the task is calibrated.
- **Opt@K** (GSO), in both forms, over the *calibrated* tasks: a task counts at K when one of
  its first K candidates (in search order) is ``opt_base`` (geometric-mean speedup >= 1.2,
  rounded to 0.1, and significantly faster) or ``opt_commit`` (also a harmonic mean of
  agent-vs-human ratios > 0.95).
- **Speed ratio** (SWE-fficiency): ``(T_base/T_agent) / (T_base/T_human)`` per calibrated task,
  its best candidate's; a task with no correct candidate counts as no change (agent speedup
  1, so its ratio is 1 / human speedup); harmonic mean over tasks.

A task is calibrated on the run when every evaluation that timed it found the human release
significantly faster than the baseline (the evaluations' own ``calibrated``); tasks that were
not are listed and left out of Opt@K and the speed ratio, never silently scored.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from kbtool.report.sections import KindReport, RunView, Table

K_VALUES = (1, 5, 10)


def _timed(result: dict[str, Any]) -> bool:
    return result.get("status") == "ok" and isinstance(result.get("speedup"), (int, float))


def _interval(value: Any, ci: Any) -> str:
    if not isinstance(value, (int, float)):
        return "-"
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def task_summary(view: RunView, task: str) -> dict[str, Any]:
    """One task's figures from its evaluated candidates.  Whether it is calibrated, and the
    human's speedup, are the task's: from every evaluation of the run that timed it (all the
    models of a predictions run, where the view shows one of them)."""
    results = [c.result for c in view.candidates(task)]
    timed = [r for r in results if _timed(r)]
    every = [r for r in (c.result for c in view.all_candidates(task)) if _timed(r)]
    humans = [r for r in every if isinstance(r.get("human_speedup"), (int, float))]
    calibrated = bool(every) and all(r.get("calibrated") is True for r in every)
    best = max(timed, key=lambda r: r["speedup"], default=None)
    human = (statistics.geometric_mean([r["human_speedup"] for r in humans])
             if humans else None)
    # No correct candidate: no change (speedup 1), so its ratio is 1 / the human's.
    ratio = best.get("agent_vs_human") if best is not None else 1.0 / human if human else None
    labels = view.labels(task)
    return {
        "package": labels.get("package"), "pair": labels.get("pair"),
        "negative_control": labels.get("negative_control") == "true",
        "candidates": len(results), "correct": len(timed),
        "calibrated": calibrated if every else None,
        "best_speedup": best["speedup"] if best else None,
        "best_speedup_ci": best.get("speedup_ci") if best else None,
        "best_significant": bool(best and best.get("significant")),
        "human_speedup": human,
        "human_speedup_ci": best.get("human_speedup_ci") if best else None,
        "agent_vs_human": best.get("agent_vs_human") if best else None,
        "agent_vs_human_ci": best.get("agent_vs_human_ci") if best else None,
        "speed_ratio": ratio,
        "opt_base": [bool(r.get("opt_base")) for r in results],
        "opt_commit": [bool(r.get("opt_commit")) for r in results],
    }


def opt_at_k(tasks: dict[str, dict[str, Any]], form: str, k: int) -> float | None:
    """The share of calibrated tasks with an ``form`` candidate among their first k."""
    scored = [t for t in tasks.values() if t["calibrated"]]
    if not scored:
        return None
    return sum(any(t[form][:k]) for t in scored) / len(scored)


def perf_report(view: RunView) -> KindReport | None:
    ids = view.tasks_of("perf")
    if not ids:
        return None
    tasks = {task: task_summary(view, task) for task in ids}
    scored = {t: s for t, s in tasks.items() if s["calibrated"]}
    uncalibrated = sorted(t for t, s in tasks.items() if not s["calibrated"])
    ks = sorted({*K_VALUES, max((len(s["opt_base"]) for s in tasks.values()), default=1)})
    opt = {form: {str(k): opt_at_k(tasks, form, k) for k in ks}
           for form in ("opt_base", "opt_commit")}
    # GSO's Opt@K assumes K attempts per task: past a task's candidates, its Opt@K stops
    # growing, and the figure is Opt@(what it had).
    short = {k: sorted(t for t, v in scored.items() if len(v["opt_base"]) < k) for k in ks}
    caveats = [f"K={k} exceeds the candidates of {len(names)} of {len(scored)} scored tasks "
               f"(fewest: {min(len(scored[t]['opt_base']) for t in names)}): their Opt@{k} "
               "counts only the candidates they had" for k, names in short.items() if names]
    ratios = [s["speed_ratio"] for s in scored.values()
              if isinstance(s["speed_ratio"], (int, float)) and s["speed_ratio"] > 0]
    hmean = statistics.harmonic_mean(ratios) if ratios else None
    data = {
        "tasks": tasks, "opt_at_k": opt, "scored_tasks": len(scored),
        "uncalibrated": uncalibrated,
        "speed_ratio_hmean": hmean, "caveats": caveats,
        "note": "uncalibrated tasks (the human release was not significantly faster than the "
                "baseline in their evaluations here) are left out of opt_at_k and the speed "
                "ratio",
    }
    three_way = Table("three_way", "baseline / human / agent (speedups over the baseline)",
                      ["task", "pair", "calibrated", "correct", "agent speedup",
                       "human speedup", "agent vs human", "significant"],
                      [[t, s["pair"], {True: "yes", False: "NO", None: "-"}[s["calibrated"]],
                        f"{s['correct']}/{s['candidates']}",
                        _interval(s["best_speedup"], s["best_speedup_ci"]),
                        _interval(s["human_speedup"], s["human_speedup_ci"]),
                        _interval(s["agent_vs_human"], s["agent_vs_human_ci"]),
                        "yes" if s["best_significant"] else "no"] for t, s in tasks.items()])
    rows = [[form, *[_share(opt[form][str(k)]) + ("*" if short[k] else "") for k in ks]]
            for form in opt]
    rows.append(["speed ratio (hmean)", _ratio(hmean),
                 *[""] * (len(ks) - 1)])
    scores = Table("opt_at_k", f"Opt@K over {len(scored)} calibrated tasks"
                   + (f" (left out, uncalibrated: {', '.join(uncalibrated)})"
                      if uncalibrated else "")
                   + ("; * " + "; ".join(caveats) if caveats else ""),
                   ["metric", *[f"K={k}" for k in ks]], rows)
    return KindReport(kind="perf", data=data, tables=[three_way, scores],
                      plot=lambda folder: _plot(tasks, opt, folder))


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _plot(tasks: dict[str, dict[str, Any]], opt: dict[str, dict[str, float | None]],
          folder: Path) -> list[Path]:
    """perf_speedups.png: human and best agent speedup per task, with intervals;
    perf_opt_at_k.png: Opt@K in both forms."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    names = list(tasks)
    fig = Figure(figsize=(max(5.0, 1.2 * len(names)), 4))
    ax = fig.add_subplot()
    for offset, (key, ci, label) in enumerate((("human_speedup", "human_speedup_ci", "human"),
                                               ("best_speedup", "best_speedup_ci", "agent"))):
        xs, ys, low, high = [], [], [], []
        for i, name in enumerate(names):
            value, bounds = tasks[name][key], tasks[name][ci]
            if not isinstance(value, (int, float)):
                continue
            xs.append(i + (offset - 0.5) * 0.35)
            ys.append(value)
            lo, hi = bounds if isinstance(bounds, list) and len(bounds) == 2 else (value, value)
            low.append(max(value - lo, 0.0))
            high.append(max(hi - value, 0.0) if math.isfinite(hi) else 0.0)
        ax.bar(xs, ys, width=0.35, yerr=[low, high], capsize=3, label=label)
    ax.axhline(1.0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.split("/")[-1] + ("" if tasks[n]["calibrated"] else "\n(uncal.)")
                        for n in names], rotation=20, fontsize=8)
    ax.set_ylabel("speedup over the baseline")
    ax.legend()
    fig.tight_layout()
    for suffix in ("png", "pdf"):
        path = folder / f"perf_speedups.{suffix}"
        FigureCanvasAgg(fig).print_figure(str(path))
        written.append(path)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for form, series in opt.items():
        points = [(int(k), v) for k, v in series.items() if v is not None]
        ax.plot([k for k, _ in points], [v for _, v in points], marker="o", label=form)
    ax.set_xlabel("K (candidates per task)")
    ax.set_ylabel("share of calibrated tasks")
    ax.set_ylim(0, 1.05)
    ax.legend()
    fig.tight_layout()
    for suffix in ("png", "pdf"):
        path = folder / f"perf_opt_at_k.{suffix}"
        FigureCanvasAgg(fig).print_figure(str(path))
        written.append(path)
    return written
