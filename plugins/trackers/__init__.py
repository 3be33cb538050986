"""Built-in experiment trackers: ``wandb`` (Weights & Biases) and ``mlflow`` (``builtin``).

Each imports its library only when a run asks for it (the ``wandb`` and ``mlflow``
extras).  Neither needs a network: W&B with ``WANDB_MODE=offline`` writes the run under its
directory, MLflow's default here is its local file store (``./mlruns``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbtool.plugin.hookspecs import hookimpl


def wandb_tracker() -> Any:
    from kbtool_plugins.trackers.builtin import WandbTracker

    return WandbTracker()


def mlflow_tracker() -> Any:
    from kbtool_plugins.trackers.builtin import MLflowTracker

    return MLflowTracker()


@hookimpl
def register_trackers(register: Callable[[str, Any], None]) -> None:
    register("wandb", wandb_tracker)
    register("mlflow", mlflow_tracker)
