"""Tasks: the task model, the task kind contract, task sources, and finding tasks."""

from kbtool.task.kind import NoDetails, TaskKind
from kbtool.task.model import Task, TaskRefused, TaskSource

__all__ = ["NoDetails", "Task", "TaskKind", "TaskRefused", "TaskSource"]
