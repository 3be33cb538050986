"""Experiment trackers: a run's settings, evaluations, summary and figures, sent to W&B,
MLflow or a plugin's tracker (``tracker=wandb,mlflow``; docs/trackers.md).

A tracker subclasses :class:`Tracker` and is registered by a plugin::

    @hookimpl
    def register_trackers(register):
        register("mytracker", MyTracker)     # a factory: called once per run

``kbtool.tracking.session.RunTrackers`` drives them from the run's own typed events (the
same ones the progress display gets), so a tracker sees exactly what the run records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from kbtool.runs.provenance import EvalRecord


class TrackedRun(BaseModel):
    """What a tracker is told when a run starts."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the run directory's name")
    run_dir: str = Field(description="the run directory, absolute")
    project: str = Field(description="tracker_project: the W&B project, the MLflow experiment")
    resumed: bool = False
    settings: dict[str, Any] = Field(description="the run's resolved settings (config.yaml)")
    tags: dict[str, str] = Field(default_factory=dict,
                                 description="model, strategy, kbtool version, source")


class EvalRow(EvalRecord):
    """One evaluation as a tracker logs it."""

    step: int = Field(ge=1, description="evaluations of the run so far, this one included")
    sample: str = Field("", description="task/pP/aA/sS: the call of the search")
    details: dict[str, Any] = Field(default_factory=dict, description="the kind's fields")

    def numbers(self) -> dict[str, float]:
        """The numeric values, as metrics (``correct`` as 0/1; the kind's numeric details
        as ``details.<name>``)."""
        values: dict[str, Any] = {
            "correct": float(self.correct), "runtime_ms": self.runtime_ms,
            "baseline_ms": self.baseline_ms, "speedup": self.speedup,
            "speedup_low": self.speedup_low, "speedup_high": self.speedup_high,
            **{f"details.{k}": v for k, v in self.details.items()}}
        return {k: float(v) for k, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Tracker:
    """Base class of experiment trackers.  One instance per run; kbtool calls it from the
    run's threads, one call at a time.  ``start`` may raise ``UsageError`` (its library is
    missing, a setting is wrong): the run then does not start.  A later call that raises
    is reported once and the tracker is left out for the rest of the run; the run's own
    files keep everything."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def start(self, run: TrackedRun) -> None:
        """Open the tracker's run and record the settings."""
        raise NotImplementedError

    def log_eval(self, row: EvalRow) -> None:
        """Record one evaluation (``row.step`` increases by one each time)."""
        raise NotImplementedError

    def log_summary(self, metrics: dict[str, float]) -> None:
        """Record the run's summary: fast_p, geometric means, counts, cost (flat names,
        ``/``-separated), once, at the end."""
        raise NotImplementedError

    def log_artifacts(self, files: list[Path]) -> None:
        """Keep these files with the run: the report's figures (PNG, PDF), ``report.json``
        and ``evaluations.jsonl``."""
        raise NotImplementedError

    def finish(self, status: str) -> None:
        """Close the tracker's run; ``status`` is the kbtool run's (``finished``,
        ``budget_exhausted``, ``interrupted``, ...)."""
        raise NotImplementedError
