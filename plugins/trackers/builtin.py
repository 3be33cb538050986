"""The built-in trackers ``wandb`` (Weights & Biases) and ``mlflow``."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from kbtool.errors import UsageError
from kbtool.tracking import EvalRow, TrackedRun, Tracker


def _library(module: str, extra: str, tracker: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"tracker {tracker} needs the {module} library: "
                         f"pip install 'kbtool[{extra}]'") from None


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``a.b.c`` keys (MLflow's parameters are flat)."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class WandbTracker(Tracker):
    """Weights & Biases: the settings as the run's config, one history row per evaluation
    (the evaluation's step), the summary metrics in the run's summary, the files as one
    artifact of type ``kbtool-report``.  ``WANDB_MODE=offline`` keeps everything local
    (``wandb sync`` uploads it later); the run is written under ``WANDB_DIR``, else under
    the kbtool run directory."""

    name = "wandb"
    description = "Weights & Biases (WANDB_MODE=offline: no network)"

    def __init__(self) -> None:
        self.wandb = _library("wandb", "wandb", self.name)
        self.run: Any = None
        self.run_name = ""

    def start(self, run: TrackedRun) -> None:
        self.run_name = run.name
        self.run = self.wandb.init(
            project=run.project, name=run.name, config=run.settings, job_type="kbtool-run",
            tags=[f"{k}:{v}"[:64] for k, v in run.tags.items()] + (["resumed"] if run.resumed
                                                                      else []),
            dir=None if os.environ.get("WANDB_DIR") else run.run_dir,
            settings=self.wandb.Settings(console="off", silent=True))

    def log_eval(self, row: EvalRow) -> None:
        data = {**row.numbers(), "task": row.task, "status": row.status,
                "sample": row.sample, "flags": ",".join(row.flags),
                "candidate_hash": row.candidate_hash, "task_hash": row.task_hash,
                "machine": row.machine, "device_name": row.device_name}
        self.run.log({k: v for k, v in data.items() if v is not None}, step=row.step)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self.run.summary.update(metrics)

    def log_artifacts(self, files: list[Path]) -> None:
        name = re.sub(r"[^\w.-]+", "_", f"{self.run_name}-report")
        artifact = self.wandb.Artifact(name, type="kbtool-report")
        for file in files:
            artifact.add_file(str(file), name=f"{file.parent.name}/{file.name}"
                              if file.parent.name == "figures" else file.name)
        self.run.log_artifact(artifact)

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status in ("finished", "budget_exhausted") else 1)


# MLflow accepts these characters in metric and parameter names.
_MLFLOW_KEY = re.compile(r"[^\w\-. /]")


class MLflowTracker(Tracker):
    """MLflow: the settings as parameters (``a.b`` for nested keys), each evaluation's
    numbers as metrics at its step, the summary metrics, the files as artifacts
    (``figures/`` and the rest at the top).  The store is ``MLFLOW_TRACKING_URI``, else
    the file store ``./mlruns``; a file store is allowed for the run (MLflow 3 asks for
    ``MLFLOW_ALLOW_FILE_STORE=true``)."""

    name = "mlflow"
    description = "MLflow (MLFLOW_TRACKING_URI; default: the file store ./mlruns)"

    def __init__(self) -> None:
        self.mlflow = _library("mlflow", "mlflow", self.name)
        self.client: Any = None
        self.run_id = ""

    def start(self, run: TrackedRun) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI") or (Path.cwd() / "mlruns").as_uri()
        if uri.startswith("file:") or "://" not in uri:
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(run.project)
        experiment_id = experiment.experiment_id if experiment is not None else \
            self.client.create_experiment(run.project)
        tags = {**{f"kbtool.{k}": v for k, v in run.tags.items()},
                "kbtool.run_dir": run.run_dir, "kbtool.resumed": str(run.resumed).lower()}
        self.run_id = self.client.create_run(experiment_id, run_name=run.name,
                                             tags=tags).info.run_id
        params = [Param(_MLFLOW_KEY.sub("_", k)[:250], "" if v is None else str(v)[:6000])
                  for k, v in flatten(run.settings).items()]
        for start in range(0, len(params), 100):  # MLflow takes 100 parameters a batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(_MLFLOW_KEY.sub("_", k)[:250], v, now, step) for k, v in values.items()]
        for start in range(0, len(metrics), 1000):  # and 1000 metrics
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def log_eval(self, row: EvalRow) -> None:
        self._metrics(row.numbers(), row.step)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self._metrics(metrics, 0)

    def log_artifacts(self, files: list[Path]) -> None:
        for file in files:
            self.client.log_artifact(self.run_id, str(file),
                                     "figures" if file.parent.name == "figures" else None)

    def finish(self, status: str) -> None:
        self.client.set_terminated(
            self.run_id, "FINISHED" if status in ("finished", "budget_exhausted") else
            "KILLED" if status == "interrupted" else "FAILED")
