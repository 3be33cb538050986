"""The trackers of one run, fed by the run's events (``RunStore.subscribe``).

``start`` opens every tracker named by ``tracker=`` before the search begins (an unknown
name or a missing library stops the run there, before anything is spent); each ``eval``
event becomes an :class:`~kbtool.tracking.EvalRow`; ``finish`` sends the report's summary
metrics, its figures, ``report.json`` and ``evaluations.jsonl``, then closes them.  A
tracker that fails after it started is reported once and left out; the run goes on.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from kbtool import __version__
from kbtool.config import Config, config_as_dict
from kbtool.errors import KbtoolError, RunError
from kbtool.plugin import registry
from kbtool.runs.events import Eval
from kbtool.runs.provenance import task_hash
from kbtool.runs.store import RunStore, read_events
from kbtool.task.model import Task
from kbtool.tracking import EvalRow, TrackedRun, Tracker

log = logging.getLogger(__name__)


def summary_metrics(report: dict[str, Any]) -> dict[str, float]:
    """A run's report (``kbtool report --json``) as flat metrics: counts, cost, fast_p and
    geometric means per baseline, each task's speedups."""
    found: dict[str, Any] = {
        "n_tasks": report.get("n_tasks"),
        "tasks_correct": report["statuses"].get("tasks_correct"),
        "total_candidates": report["statuses"].get("total_candidates"),
        "candidate_correct_rate": report["statuses"].get("candidate_correct_rate"),
        **{f"cost/{k}": v for k, v in report.get("cost", {}).items()},
        **{f"fast_p/{mode}/{p}": v for mode, by_p in report.get("fast_p", {}).items()
           for p, v in by_p.items()},
        **{f"geomean_speedup/{group}/{mode}": v
           for group, by_mode in report.get("geomean_speedup", {}).items()
           if isinstance(by_mode, dict) for mode, v in by_mode.items()},
        **{f"task/{task_id}/speedup/{mode}": v for task_id, t in report.get("tasks", {}).items()
           for mode, v in (t.get("speedup") or {}).items()},
    }
    return {k: float(v) for k, v in found.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


class RunTrackers:
    """The trackers ``config.tracker`` names, for one run."""

    def __init__(self, config: Config, store: RunStore, tasks: list[Task]) -> None:
        self.config = config
        self.store = store
        self.trackers: dict[str, Tracker] = {
            name: registry.TRACKERS.get(name)() for name in dict.fromkeys(config.tracker)}
        self.tasks = {t.id: t for t in tasks}
        self.hashes = {t.id: task_hash(t) for t in tasks}
        self.rows: list[EvalRow] = []
        self._lock = threading.Lock()
        self._step = sum(1 for e in read_events(store.dir) if e.get("type") == "eval")

    @staticmethod
    def check(config: Config) -> None:
        """Raise ``UsageError`` for a tracker that is unknown or cannot work here (its
        library is not installed): its factory says so."""
        for name in dict.fromkeys(config.tracker):
            registry.TRACKERS.get(name)()

    def start(self, resumed: bool) -> None:
        """Open every tracker; on a failure, close those already open and raise."""
        run = TrackedRun(
            name=self.store.dir.name, run_dir=str(self.store.dir.resolve()),
            project=self.config.tracker_project, resumed=resumed,
            settings=config_as_dict(self.config),
            tags={"kbtool_version": __version__, "model": self.config.model_name,
                  "strategy": self.config.strategy, "source": self.config.source})
        started: list[str] = []
        for name, tracker in self.trackers.items():
            try:
                tracker.start(run)
            except Exception as exc:
                for other in started:
                    self._call(other, "finish", "failed")
                if isinstance(exc, KbtoolError):
                    raise
                raise RunError(f"tracker {name} could not start: {type(exc).__name__}: "
                               f"{exc}".splitlines()[0]) from None
            started.append(name)

    def event(self, data: dict[str, Any]) -> None:
        """A subscriber of the run's events: each ``eval`` event is logged as a row."""
        if data.get("type") != "eval" or not self.trackers:
            return
        event = Eval.model_validate(data)
        try:
            text = (self.store.dir / event.path).read_text() if event.path else None
        except OSError:
            text = None
        task = self.tasks.get(event.task)
        with self._lock:
            self._step += 1
            row = EvalRow.from_eval(data, event.path, text, self.hashes.get(event.task),
                                    task.kind if task is not None else None,
                                    details=event.details, step=self._step, sample=event.sample)
            self.rows.append(row)
            for name in list(self.trackers):
                self._call(name, "log_eval", row)

    def finish(self, status: str) -> None:
        """The summary, the figures and the rows, then close every tracker."""
        with self._lock, tempfile.TemporaryDirectory(prefix="kbtool-track-") as tmp:
            files: list[Path] = []
            metrics: dict[str, float] = {}
            try:
                files, metrics = self._report_files(Path(tmp))
            except Exception as exc:  # a run too broken to report: still close the trackers
                log.warning("trackers: the run's report could not be made (%s: %s)",
                            type(exc).__name__, exc)
            for name in list(self.trackers):
                if metrics:
                    self._call(name, "log_summary", metrics)
                if files and name in self.trackers:
                    self._call(name, "log_artifacts", files)
                if name in self.trackers:
                    self._call(name, "finish", status)

    def _report_files(self, directory: Path) -> tuple[list[Path], dict[str, float]]:
        from kbtool.report.build import load_run, report_of, write_figures

        report, sections = report_of(load_run(self.store.dir))
        files = write_figures({str(self.store.dir): report}, {str(self.store.dir): sections},
                              directory / "figures")
        (directory / "report.json").write_text(json.dumps(report, indent=1, allow_nan=False))
        with open(directory / "evaluations.jsonl", "w") as handle:
            for row in self.rows:
                handle.write(row.model_dump_json() + "\n")
        files += [directory / "report.json", directory / "evaluations.jsonl"]
        return files, summary_metrics(report)

    def _call(self, name: str, method: str, *args: Any) -> None:
        try:
            getattr(self.trackers[name], method)(*args)
        except Exception as exc:  # a tracker must never stop the run
            log.warning("tracker %s failed in %s (%s: %s); it logs nothing more of this run",
                        name, method, type(exc).__name__, str(exc).splitlines()[0] if str(exc)
                        else "")
            log.debug("traceback of tracker %s", name, exc_info=True)
            del self.trackers[name]
