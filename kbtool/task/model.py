"""The task model and the interface of task sources.

A task names a problem and the *kind* of check it needs.  What a task is made of beyond its
name (a problem file, a repository method, a library release pair) is its kind's business:
``path`` is where it is defined when that is one file, ``payload`` holds the rest, and the
task kind (``kbtool.task.kind.TaskKind``) validates and reads it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kbtool.errors import UsageError

if TYPE_CHECKING:
    from kbtool.config.model import Config

log = logging.getLogger(__name__)


class Task(BaseModel):
    """One task; crosses process and machine boundaries (jobs, run directories) as JSON."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(description="'<source>/<level>/<name>', unique across sources")
    source: str
    name: str
    kind: str = "kernelbench"
    path: Path | None = Field(None, description="the file that defines the task, if one does")
    level: int | None = None
    number: int | None = None
    payload: dict[str, Any] = Field(default_factory=dict,
                                    description="the kind's data, validated by the kind")

    @model_validator(mode="before")
    @classmethod
    def _meta_is_payload(cls, data: Any) -> Any:
        if isinstance(data, dict) and "meta" in data:
            log.warning("Task(meta=...) is deprecated; use Task(payload=...)")
            data = {**data}
            data.setdefault("payload", data.pop("meta") or {})
            data.pop("meta", None)
        return data

    def __hash__(self) -> int:  # the payload is a dict: hash by identity fields
        return hash((self.id, self.kind, self.path))


class TaskSource(Protocol):
    description: str

    def tasks(self, config: Config) -> list[Task]:
        """All tasks of this source, sorted by level and number."""
        ...


class TaskRefused(UsageError):
    """The task cannot run here (too large for this machine, bad size override), or it is
    broken (its reference fails): the task's fault, never a candidate's verdict."""


class TaskAudit(BaseModel):
    """What ``kbtool tasks check`` found of one task (``TaskKind.audit``)."""

    model_config = ConfigDict(extra="forbid")
    task: str = ""
    problems: list[str] = Field(default_factory=list, description="what the task's author "
                                "must fix, one line each (none: the task is sound)")
    checked: list[str] = Field(default_factory=list, description="what was checked and "
                               "found sound, one line each")
