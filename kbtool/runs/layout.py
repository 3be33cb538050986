"""The run directory's layout: every path a run writes, named in one place.

::

    RUN/config.yaml                    the resolved settings
    RUN/tasks.json                     the tasks of the run (id, path, kind, labels, hash)
    RUN/events.jsonl                   the event log (kbtool.runs.events), append-only
    RUN/summary.json                   the summary (kbtool.runs.summary), at the end
    RUN/plan.json, RUN/plan/<task>/    a dry run's plan and rendered prompts
    RUN/calls/<key>.json               every LLM answer, by request key (resume)
    RUN/evals/<key>.json               every evaluation, by candidate and settings (resume)
    RUN/tasks/<task>/ideas.md          the ideas step's reply
    RUN/tasks/<task>/phase<P>/agent<A>/step<S>/
        prompt.md, response.md, candidate<.suffix>, eval.json
    RUN/predictions.json               a predictions run's record (kbtool.predictions)
    RUN/tasks/<task>/phase0/agent<A>/step0/prediction.json
                                       which model wrote that candidate (a predictions run)

``<task>`` is the task id made a safe file name (:func:`safe_name`).
"""

from __future__ import annotations

import re
from pathlib import Path

EVENTS = "events.jsonl"
CONFIG = "config.yaml"
SUMMARY = "summary.json"
TASKS = "tasks.json"
PLAN = "plan.json"
PREDICTIONS = "predictions.json"
PREDICTION = "prediction.json"
CALLS = "calls"
EVALS = "evals"
TASKS_DIR = "tasks"

# A candidate's path relative to the run directory: task, phase, agent, step.
STEP_PATH = re.compile(
    r"tasks/([^/]+)/phase(\d+)/agent(\d+)/step(\d+)/candidate(\.[\w.]+)?$")


def safe_name(task_id: str) -> str:
    """A task id as one file name: ``builtin/1/2_ReLU`` -> ``builtin_1_2_ReLU``."""
    return re.sub(r"[^\w.-]+", "_", task_id)


class RunLayout:
    """The paths of one run directory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def events(self) -> Path:
        return self.root / EVENTS

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def tasks(self) -> Path:
        return self.root / TASKS

    @property
    def plan(self) -> Path:
        return self.root / PLAN

    @property
    def predictions(self) -> Path:
        return self.root / PREDICTIONS

    @property
    def calls(self) -> Path:
        return self.root / CALLS

    @property
    def evals(self) -> Path:
        return self.root / EVALS

    def eval_record(self, key: str) -> Path:
        return self.evals / f"{key}.json"

    def task_dir(self, task_id: str) -> Path:
        return self.root / TASKS_DIR / safe_name(task_id)

    def plan_dir(self, task_id: str) -> Path:
        return self.root / "plan" / safe_name(task_id)

    def ideas(self, task_id: str) -> Path:
        return self.task_dir(task_id) / "ideas.md"

    def step_dir(self, task_id: str, phase: int, agent: int, step: int) -> Path:
        return self.task_dir(task_id) / f"phase{phase}" / f"agent{agent}" / f"step{step}"

    def candidate(self, step_dir: Path, suffix: str = ".py") -> Path:
        return step_dir / f"candidate{suffix}"

    def prediction(self, step_dir: Path) -> Path:
        return step_dir / PREDICTION

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def is_run(self) -> bool:
        return any(p.is_file() for p in (self.summary, self.events, self.config, self.tasks))


def parse_step_path(relative: str) -> tuple[str, int, int, int] | None:
    """``tasks/<task>/phaseP/agentA/stepS/candidate.py`` -> (safe task name, P, A, S)."""
    match = STEP_PATH.search(relative.replace("\\", "/"))
    if match is None:
        return None
    return match.group(1), int(match.group(2)), int(match.group(3)), int(match.group(4))
