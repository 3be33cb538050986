"""A predictions run in ``kbtool report``: one report per model, and pass@k.

A predictions run (``kbtool eval --predictions``; ``predictions.json`` at its root) holds
several models' candidates; each candidate's ``prediction.json`` says whose it is.
``kbtool report`` reports each model as a run of its own, labelled ``RUN [model]``, side by
side: the model's candidates only, by the same rule as any run (fast_p, geometric means,
statuses, and the kinds' sections: Opt@K for perf tasks, pass rates for repository items),
over **all** the run's tasks (a task a model sent nothing for counts against it, as GSO
counts an instance without a prediction).  It adds **pass@k** (``pass_at_k``):

    pass@k = mean over the run's tasks of 1 - C(n - c, k) / C(n, k)

with ``n`` the model's judged predictions for the task and ``c`` those whose status is
``ok`` (the unbiased estimator of Chen et al., 2021); ``internal_error`` (kbtool's failure,
no verdict) counts in neither.  For a task with fewer than ``k`` predictions the estimator
is undefined: the task counts as passed when any of its ``n`` passed (pass@n), and the
table marks that ``k`` with ``*``.  ``k`` runs over 1, 5, 10, 100 and the most predictions
any model sent for one task, up to that most.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from kbtool.errors import UsageError
from kbtool.evaluation.result import Status
from kbtool.predictions.model import PredictionRecord, PredictionsManifest
from kbtool.report.build import RunData, _read_config, _reconstruct
from kbtool.report.sections import KindReport, Table
from kbtool.runs.layout import RunLayout

K_VALUES = (1, 5, 10, 100)
SECTION = "predictions"  # the section's name, and its key in the --json report


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k predictions drawn from n, c of them correct, is
    correct; with fewer than k, whether any of the n is (pass@n)."""
    if n < k:
        return 1.0 if c > 0 else 0.0
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def _records(run: RunData) -> list[tuple[PredictionRecord, str]]:
    """Each prediction of the run and its candidate's path relative to the run."""
    found = []
    for path in sorted(run.dir.glob("tasks/*/phase0/agent*/step0/prediction.json")):
        try:
            record = PredictionRecord.model_validate_json(path.read_text())
        except (OSError, ValidationError):
            continue
        candidate = next(iter(sorted(path.parent.glob("candidate*"))), None)
        if candidate is not None:
            found.append((record, candidate.relative_to(run.dir).as_posix()))
    return found


def by_model(runs: dict[str, RunData]) -> dict[str, RunData]:
    """The runs to report: a predictions run as one run per model, the others as they are."""
    out: dict[str, RunData] = {}
    for label, run in runs.items():
        layout = RunLayout(run.dir)
        if not layout.predictions.is_file():
            out[label] = run
            continue
        try:
            manifest = PredictionsManifest.model_validate_json(layout.predictions.read_text())
        except (OSError, ValidationError) as exc:
            raise UsageError(f"{layout.predictions} is unreadable "
                             f"({str(exc).splitlines()[0]})") from None
        records = _records(run)
        models = list(dict.fromkeys([*manifest.models, *(r.model for r, _ in records)]))
        most = max(Counter((r.model, r.task) for r, _ in records).values(), default=1)
        ks = sorted({k for k in K_VALUES if k <= most} | {max(most, 1)})
        config = _read_config(layout)
        for model in models:
            mine = [(r, rel) for r, rel in records if r.model == model]
            only = frozenset(rel for _, rel in mine)
            view = _reconstruct(run.dir, run.events, config, only)
            keys = {r.key for r, _ in mine if layout.eval_record(r.key).is_file()}
            out[f"{label} [{model}]"] = replace(
                view, source="predictions", status=run.status, model=model,
                strategy="predictions", baselines=run.baselines, only=only,
                totals={**view.totals, "evaluations": len(keys)},
                sections=[section(view, ks)])
    return out


def section(run: RunData, ks: list[int]) -> KindReport:
    """pass@k of one model's view of a predictions run."""
    counts = {}
    for task_id, info in run.tasks.items():
        judged = sum(n for status, n in info.statuses.items()
                     if status != Status.internal_error.value)
        counts[task_id] = (judged, info.statuses.get(Status.ok.value, 0))
    n_tasks = len(counts) or 1
    values = {str(k): sum(pass_at_k(n, c, k) for n, c in counts.values()) / n_tasks
              for k in ks}
    short = {str(k): sorted(t for t, (n, _) in counts.items() if 0 < n < k) for k in ks}
    missing = sorted(t for t, (n, _) in counts.items() if n == 0)
    data: dict[str, Any] = {
        "k": ks, "pass_at_k": values, "n_tasks": len(counts),
        "predictions": {t: {"n": n, "correct": c} for t, (n, c) in counts.items()},
        "without_predictions": missing,
        "fewer_than_k": {k: tasks for k, tasks in short.items() if tasks},
        "estimator": "mean over tasks of 1 - C(n-c, k) / C(n, k); pass@n where n < k"}
    caveats = [f"k={k}: {len(tasks)} of {len(counts)} tasks have fewer predictions "
               f"(pass@n for them)" for k, tasks in data["fewer_than_k"].items()]
    table = Table("pass_at_k", f"pass@k over {len(counts)} tasks (unbiased estimator)"
                  + (f", {len(missing)} of them without predictions (counted as failed)"
                     if missing else "")
                  + ("; * " + "; ".join(caveats) if caveats else ""),
                  ["metric", *[f"k={k}" for k in ks]],
                  [["pass@k", *[_share(values[str(k)]) + ("*" if short[str(k)] else "")
                                for k in ks]]])
    return KindReport(kind=SECTION, data=data, tables=[table])


def comparison(reports: dict[str, dict[str, Any]]) -> list[Table]:
    """pass@k of every model side by side (reports of predictions runs only)."""
    found = {label: rep[SECTION] for label, rep in reports.items()
             if isinstance(rep.get(SECTION), dict)}
    if not found:
        return []
    ks = sorted({int(k) for data in found.values() for k in data["pass_at_k"]})
    return [Table("pass_at_k", "pass@k", ["run", *[f"k={k}" for k in ks]],
                  [[label, *[_share(data["pass_at_k"].get(str(k))) for k in ks]]
                   for label, data in found.items()])]


def _share(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"
