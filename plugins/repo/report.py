"""What ``kbtool report`` adds for repository items: their numbers by turn.

A turn is a step of a chain (the ``multiturn`` strategy has one chain per item: turn ``t``
is step ``t - 1``).  By turn ``i``, per task type and over all items:

- cumulative pass rate: items whose tests all passed at a turn ``<= i``, over the items;
- mean share of tests passed: each item's ``tests_passed / tests_total`` at its latest
  checked turn ``<= i`` (an item that stopped early, passed or not, carries its last value
  forward; before its first checked turn it counts 0), averaged over the items.

Items whose tests could not run (the ``infrastructure`` flag) and never passed are left
out of both and counted apart: they say nothing of the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbtool.report.sections import CandidateRecord, KindReport, RunView, Table
from kbtool_plugins.repo.settings import TASK_TYPES

INFRASTRUCTURE = "infrastructure"
ALL = "all"


def _share(result: dict[str, Any]) -> float:
    if result.get("status") == "ok":
        return 1.0
    total = result.get("tests_total")
    passed = result.get("tests_passed")
    if isinstance(total, int) and isinstance(passed, int) and total > 0:
        return min(max(passed / total, 0.0), 1.0)
    return 0.0


def item_turns(candidates: list[CandidateRecord], turns: int) -> tuple[list[bool], list[float]]:
    """(passed by turn, share of tests passed by turn) of one item, ``turns`` long."""
    passed, share = [False] * turns, [0.0] * turns
    chains: dict[tuple[int, int], list[CandidateRecord]] = {}
    for candidate in candidates:
        chains.setdefault((candidate.phase, candidate.agent), []).append(candidate)
    for records in chains.values():
        last, ok = 0.0, False
        by_step = {c.step: c for c in records}
        for turn in range(turns):
            record = by_step.get(turn)
            if record is not None:
                last = _share(record.result)
                ok = ok or record.result.get("status") == "ok"
            passed[turn] = passed[turn] or ok
            share[turn] = max(share[turn], 1.0 if ok else last)
    return passed, share


def _infrastructure_only(candidates: list[CandidateRecord]) -> bool:
    flagged = any(INFRASTRUCTURE in (c.result.get("flags") or []) for c in candidates)
    return flagged and not any(c.result.get("status") == "ok" for c in candidates)


def turn_metrics(view: RunView, task_ids: list[str]) -> dict[str, Any]:
    candidates = {t: view.candidates(t) for t in task_ids}
    turns = max((c.step + 1 for cs in candidates.values() for c in cs), default=0)
    groups: dict[str, list[tuple[list[bool], list[float]]]] = {ALL: []}
    left_out = []
    for task_id, found in candidates.items():
        if _infrastructure_only(found):
            left_out.append(task_id)
            continue
        kind = view.labels(task_id).get("task", "unknown")
        series = item_turns(found, turns)
        groups[ALL].append(series)
        groups.setdefault(kind, []).append(series)
    by_type = {}
    order = [ALL, *[t for t in TASK_TYPES if t in groups], *sorted(set(groups) -
                                                                   {ALL, *TASK_TYPES})]
    for name in order:
        members = groups[name]
        n = len(members)
        by_type[name] = {
            "items": n,
            "pass_rate": [sum(p[i] for p, _ in members) / n if n else None
                          for i in range(turns)],
            "mean_tests_passed": [sum(s[i] for _, s in members) / n if n else None
                                  for i in range(turns)]}
    return {"turns": turns, "items": len(groups[ALL]), "infrastructure": sorted(left_out),
            "by_task": by_type}


def repo_report(view: RunView) -> KindReport | None:
    task_ids = view.tasks_of("repo")
    if not task_ids:
        return None
    data = turn_metrics(view, task_ids)
    rows = []
    for name, series in data["by_task"].items():
        for turn in range(data["turns"]):
            rate, share = series["pass_rate"][turn], series["mean_tests_passed"][turn]
            rows.append([name, series["items"], turn + 1,
                         "-" if rate is None else f"{rate:.1%}",
                         "-" if share is None else f"{share:.1%}"])
    tables = [Table("turns", "pass rate and share of tests passed, by turn",
                    ["task", "items", "turn", "pass_rate", "mean_tests_passed"], rows)]
    if data["infrastructure"]:
        tables.append(Table("infrastructure", "left out: the tests could not run",
                            ["task"], [[t] for t in data["infrastructure"]]))
    return KindReport(kind="repo", data=data, tables=tables,
                      plot=lambda folder: plot(data, folder))


def plot(data: dict[str, Any], folder: Path) -> list[Path]:
    """repo_turns.png/.pdf: cumulative pass rate and mean share of tests passed by turn,
    one line per task type and one for all items."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(9, 3.6))
    turns = list(range(1, data["turns"] + 1))
    for index, (key, title) in enumerate((("pass_rate", "cumulative pass rate"),
                                          ("mean_tests_passed", "mean share of tests passed"))):
        ax = fig.add_subplot(1, 2, index + 1)
        for name, series in data["by_task"].items():
            values = [v if v is not None else float("nan") for v in series[key]]
            ax.plot(turns, values, marker="o", linewidth=2.5 if name == ALL else 1.2,
                    label=f"{name} ({series['items']})")
        ax.set_xlabel("turn")
        ax.set_title(title)
        ax.set_ylim(0, 1.05)
        ax.set_xticks(turns)
        ax.grid(alpha=0.3)
        if index == 0:
            ax.legend(fontsize=8)
    fig.tight_layout()
    written = []
    for suffix in ("png", "pdf"):
        path = folder / f"repo_turns.{suffix}"
        FigureCanvasAgg(fig).print_figure(str(path))
        written.append(path)
    return written
