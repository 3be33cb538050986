"""Tasks: the task model, the interfaces of task sources and task kinds, and finding tasks."""

from kbtool.task.model import Task, TaskKind, TaskRefused, TaskSource

__all__ = ["Task", "TaskKind", "TaskRefused", "TaskSource"]
