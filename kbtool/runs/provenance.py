"""Where a result came from: the content hashes of a task and a candidate, and the machine;
and one evaluation as a flat record with its provenance.

Defined once here for every consumer (``tasks.json`` of a run, ``kbtool report --export``,
the trackers):

- a task's hash is the SHA-256 of its kind and its *packed* payload (``kind.pack``: what a
  worker on another machine gets, the problem's text inlined), so the same problem has the
  same hash whatever source or path it was read from;
- a candidate's hash is the SHA-256 of its text (UTF-8);
- the machine is what the evaluating process recorded in ``EvalResult.env``
  (``kbtool.evaluation.environment.collect_env``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from kbtool.runs.layout import parse_step_path
from kbtool.runs.summary import finite, interval
from kbtool.task.model import Task

R = TypeVar("R", bound="EvalRecord")


def task_hash(task: Task) -> str:
    from kbtool.task.catalog import kind_of

    packed = kind_of(task).pack(task)
    text = json.dumps({"kind": packed.kind, "payload": packed.payload}, sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def candidate_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Provenance(BaseModel):
    """What every exported result row and tracked evaluation carries."""

    model_config = ConfigDict(extra="forbid")

    kbtool_version: str | None = None
    task_hash: str | None = Field(None, description="task_hash() of the task evaluated")
    candidate_hash: str | None = Field(None, description="candidate_hash() of its text")
    machine: str | None = Field(None, description="the evaluating machine's host name")
    device: str | None = Field(None, description="cpu or cuda")
    device_name: str | None = Field(None, description="the GPU's name, or the CPU's model")
    torch_version: str | None = None
    cuda_version: str | None = Field(None, description="the CUDA torch was built with")
    driver_version: str | None = Field(None, description="the NVIDIA driver's version")
    python_version: str | None = None

    @classmethod
    def of(cls, env: dict[str, Any], task_hash: str | None,
           candidate_hash: str | None) -> Provenance:
        """From an evaluation's ``env`` (keys as ``collect_env`` writes them)."""
        def text(key: str) -> str | None:
            value = env.get(key)
            return None if value is None else str(value)

        return cls(kbtool_version=text("kbtool_version"), task_hash=task_hash,
                   candidate_hash=candidate_hash, machine=text("hostname"),
                   device=text("device"), device_name=text("device_name"),
                   torch_version=text("torch_version"), cuda_version=text("cuda_version"),
                   driver_version=text("driver_version"), python_version=text("python_version"))


class EvalRecord(Provenance):
    """One evaluation of a run, flat, with its provenance: what a row of ``kbtool report
    --export``'s data set and a tracker's log of it have in common."""

    task: str
    kind: str | None = None
    phase: int | None = None
    status: str
    correct: bool
    runtime_ms: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None
    speedup_low: float | None = Field(None, description="the speedup's 95% interval")
    speedup_high: float | None = None
    noisy: bool = False
    flags: list[str] = Field(default_factory=list)
    candidate: str | None = Field(None, description="the candidate's file, relative to the run")

    @classmethod
    def from_eval(cls: type[R], data: dict[str, Any], candidate: str | None, text: str | None,
                  task_hash: str | None, kind: str | None, **extra: Any) -> R:
        """From an evaluation as a run keeps it (a step's ``eval.json``, or an ``eval``
        event): ``candidate`` its path relative to the run, ``text`` the candidate's text."""
        env = data.get("env")
        provenance = Provenance.of(env if isinstance(env, dict) else {}, task_hash,
                                   candidate_hash(text) if text is not None else None)
        bounds = interval(data.get("speedup_ci")) or (None, None)
        parsed = parse_step_path(candidate or "")
        status = str(data.get("status") or "?")
        return cls(**provenance.model_dump(), task=str(data.get("task") or "?"), kind=kind,
                   phase=parsed[1] if parsed else None, status=status, correct=status == "ok",
                   runtime_ms=finite(data.get("runtime_ms")),
                   baseline_ms=finite(data.get("baseline_ms")),
                   speedup=finite(data.get("speedup")), speedup_low=bounds[0],
                   speedup_high=bounds[1], noisy=bool(data.get("noisy")),
                   flags=[str(f) for f in data.get("flags") or []], candidate=candidate,
                   **extra)
