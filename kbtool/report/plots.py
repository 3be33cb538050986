"""Figures of ``kbtool report --plots DIR`` (matplotlib, Agg backend; PNG and PDF each).

They are drawn from the report objects of :mod:`kbtool.report.build` (the ``--json`` output), so
several runs go side by side: one series (or one panel, for per-task runtimes) per run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from kbtool.errors import UsageError

FIGURES = ("best_runtime_per_phase", "geomean_speedup_per_phase", "speedup_distribution",
           "fast_p")


def _modes(reports: dict[str, dict[str, Any]]) -> list[str]:
    """The baselines of the runs, in order (one panel each); one empty panel for none."""
    return list(dict.fromkeys(m for rep in reports.values() for m in rep["baselines"])) or [""]


def _short(labels: list[str]) -> dict[str, str]:
    """Run labels for legends: the run directory's name, the full label when ambiguous."""
    names = {label: Path(label.split(" #")[0]).name or label for label in labels}
    counts: dict[str, int] = {}
    for name in names.values():
        counts[name] = counts.get(name, 0) + 1
    return {label: (name if counts[name] == 1 else label) for label, name in names.items()}


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def write_plots(reports: dict[str, dict[str, Any]], directory: Path) -> list[Path]:
    """Write each figure of FIGURES that applies to the runs as DIR/<name>.png and .pdf."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - matplotlib is a dependency
        raise UsageError(f"--plots needs matplotlib ({exc})") from None
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"{directory} exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    from kbtool.report.build import measured_baselines, timed

    names = _short(list(reports))
    # Only the figures that apply: speedups where a baseline was timed, runtimes where a
    # solution was (a run of repository items has neither: its kind draws its own).
    figures = {}
    if any(timed(rep) for rep in reports.values()):
        figures["best_runtime_per_phase"] = _runtime_per_phase(Figure, reports, names)
    if any(measured_baselines(rep) for rep in reports.values()):
        figures["geomean_speedup_per_phase"] = _geomean_per_phase(Figure, reports, names)
        figures["speedup_distribution"] = _distribution(Figure, reports, names)
        figures["fast_p"] = _fast_p(Figure, reports, names)
    written = []
    for name, fig in figures.items():
        FigureCanvasAgg(fig)
        for ext in ("png", "pdf"):
            path = directory / f"{name}.{ext}"
            fig.savefig(path, dpi=150)
            written.append(path)
    return written


def _log_axis(ax: Any, suffix: str = "") -> None:
    """A log-scale y axis labelled 0.2, 1, 4 ... rather than 2x10^-1."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}{suffix}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _runtime_per_phase(Figure: Any, reports: dict[str, dict[str, Any]],
                       names: dict[str, str]) -> Any:
    """Best runtime so far per phase, one line per task; one panel per run."""
    n = len(reports)
    fig = Figure(figsize=(max(6.5, 5.0 * n), 4.8), layout="constrained")
    axes = fig.subplots(1, n, sharey=True, squeeze=False)[0]
    for ax, (label, rep) in zip(axes, reports.items(), strict=True):
        phases = [p["phase"] for p in rep["phases"]]
        tasks = list(rep["tasks"].items())
        colors = _colors(len(tasks))
        missing = 0
        for color, (task_id, t) in zip(colors, tasks, strict=True):
            ys = t["best_so_far_ms_by_phase"]
            if all(y is None for y in ys):
                missing += 1
                continue
            ax.plot(phases, [_nan(y) for y in ys], marker="o", color=color, label=task_id)
        _log_axis(ax)
        ax.set_xticks(phases)
        ax.set_xlabel("phase")
        ax.set_title(names[label])
        ax.grid(True, which="both", alpha=0.3)
        if missing:
            ax.text(0.02, 0.02, f"{missing} task(s) with no correct solution",
                    transform=ax.transAxes, fontsize=8, color="grey")
        if 0 < len(tasks) - missing <= 15:  # a legend of nothing warns
            ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("best runtime so far (ms, log)")
    fig.suptitle("Best runtime per phase (per task)")
    return fig


def _geomean_per_phase(Figure: Any, reports: dict[str, dict[str, Any]],
                       names: dict[str, str]) -> Any:
    """Geometric-mean speedup per phase, vs eager and vs compile; one colour per run, solid
    over correct tasks, dashed over all tasks clamped at 1."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    modes = _modes(reports)
    axes = fig.subplots(1, len(modes), squeeze=False)[0]
    colors = _colors(len(reports))
    for ax, mode in zip(axes, modes, strict=True):
        for color, (label, rep) in zip(colors, reports.items(), strict=True):
            phases = [p["phase"] for p in rep["phases"]]
            correct = [_nan(p["geomean_speedup"]["correct_tasks"].get(mode)) for p in rep["phases"]]
            clamped = [_nan(p["geomean_speedup"]["all_tasks_clamped"].get(mode))
                       for p in rep["phases"]]
            ax.plot(phases, correct, marker="o", color=color,
                    label=f"{names[label]}: correct tasks")
            ax.plot(phases, clamped, marker="s", linestyle="--", color=color,
                    label=f"{names[label]}: all tasks, clamped >= 1")
            ax.set_xticks(phases)
        ax.axhline(1.0, color="grey", linewidth=0.8)
        ax.set_title(f"vs {mode}")
        ax.set_xlabel("phase")
        ax.set_ylabel("geometric-mean speedup (x)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("Geometric-mean speedup per phase (best so far)")
    return fig


def _distribution(Figure: Any, reports: dict[str, dict[str, Any]], names: dict[str, str]) -> Any:
    """Per-task speedups of the best solutions, one strip per run (log scale), with the
    geometric mean over correct tasks as a bar."""
    n = len(reports)
    modes = _modes(reports)
    fig = Figure(figsize=(max(8, 2.2 * n * len(modes)), 4.8), layout="constrained")
    axes = fig.subplots(1, len(modes), squeeze=False, sharey=True)[0]
    colors = _colors(n)
    for ax, mode in zip(axes, modes, strict=True):
        ticks = []
        cached = 0
        for i, (color, (label, rep)) in enumerate(zip(colors, reports.items(), strict=True)):
            values = [(t["speedup"].get(mode), (t.get("speedup_from") or {}).get(mode))
                      for t in rep["tasks"].values()]
            shown = [(v, source) for v, source in values if v is not None and v > 0]
            k = len(shown)
            offsets = [0.0] if k == 1 else [-0.25 + 0.5 * j / max(k - 1, 1) for j in range(k)]
            # Hollow: a speedup against a baseline timed apart (cached), not in the pairs.
            ax.scatter([i + o for o in offsets], [v for v, _ in shown], alpha=0.8, s=28,
                       facecolors=[color if source != "cached" else "none" for _, source in shown],
                       edgecolors=["black" if source != "cached" else color for _, source in shown],
                       linewidths=[0.4 if source != "cached" else 1.2 for _, source in shown],
                       zorder=3)
            cached += sum(source == "cached" for _, source in shown)
            mean = rep["geomean_speedup"]["correct_tasks"].get(mode)
            if mean is not None:
                ax.hlines(mean, i - 0.35, i + 0.35, color=color, linewidth=2.5, zorder=2)
            ticks.append(f"{names[label]}\n{k}/{len(values)} correct")
        ax.axhline(1.0, color="grey", linewidth=0.8, linestyle=":")
        ax.set_xticks(range(n), ticks, fontsize=8)
        ax.set_xlim(-0.6, n - 0.4)
        _log_axis(ax, "x")
        ax.set_title(f"speedup vs {mode} (bar: geometric mean"
                     f"{'; hollow: cached baseline' if cached else ''})")
        ax.grid(True, axis="y", which="both", alpha=0.3)
    axes[0].set_ylabel("speedup of the best solution (x, log)")
    fig.suptitle("Speedup distribution (per task)")
    return fig


def _fast_p(Figure: Any, reports: dict[str, dict[str, Any]], names: dict[str, str]) -> Any:
    """fast_p against p, vs eager and vs compile; one line per run."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    modes = _modes(reports)
    axes = fig.subplots(1, len(modes), squeeze=False, sharey=True)[0]
    colors = _colors(len(reports))
    for ax, mode in zip(axes, modes, strict=True):
        for color, (label, rep) in zip(colors, reports.items(), strict=True):
            keys = rep["p_values"]
            # A run of kinds that are not timed has no baseline: an empty panel.
            fast = rep["fast_p"].get(mode, {})
            ax.plot([float(k) for k in keys], [_nan(fast.get(k)) for k in keys],
                    marker="o", color=color, label=names[label])
        ax.set_title(f"fast_p vs {mode}")
        ax.set_xlabel("p (speedup threshold)")
        ax.set_ylim(-0.03, 1.03)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylabel("fraction of tasks correct and > p x faster")
    fig.suptitle("fast_p")
    return fig
