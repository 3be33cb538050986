"""The events of a run's log: one typed model per event, one discriminated union.

Everything a run does is written as one of these (``RunStore.emit``); ``parse`` reads a
logged line back into its model.  Logs written before the models existed used ``step``
where these use ``sample`` (which call of the search an event belongs to:
``task/pP/aA/sS``); both are read.  The monitor folds raw dictionaries for speed, keyed by
these models' field names.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from kbtool.evaluation.result import BaselineSpeedup


class RunEvent(BaseModel):
    """Fields every logged event has; ``seq`` and ``t`` are set by the store."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: str
    seq: int = 0
    t: float = 0.0


_SAMPLE = Field("", validation_alias=AliasChoices("sample", "step"),
                description="task/pP/aA/sS: the call of the search this belongs to")


class RunStarted(RunEvent):
    type: Literal["run_started"] = "run_started"
    tasks: list[str] = Field(default_factory=list)
    resumed: bool = False
    model: str | None = None
    strategy: str | None = None
    env: dict[str, Any] = Field(default_factory=dict)
    mode: str | None = None                         # the baseline speedups are against
    baselines: list[str] = Field(default_factory=list)  # every baseline timed
    kinds: dict[str, str] = Field(default_factory=dict)  # task id -> task kind


class TaskStarted(RunEvent):
    type: Literal["task_started"] = "task_started"
    task: str


class Baseline(RunEvent):
    type: Literal["baseline"] = "baseline"
    task: str
    mode: str
    ms: float | None = None


class LLMCall(RunEvent):
    type: Literal["llm_call"] = "llm_call"
    sample: str = _SAMPLE
    key: str = ""
    model: str = ""
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0


class LLMError(RunEvent):
    type: Literal["llm_error"] = "llm_error"
    sample: str = _SAMPLE
    error: str = ""
    status: int | None = None
    attempt: int = 1
    retryable: bool = False


class LLMFailed(RunEvent):
    type: Literal["llm_failed"] = "llm_failed"
    sample: str = _SAMPLE
    error: str = ""


class FormatError(RunEvent):
    type: Literal["format_error"] = "format_error"
    sample: str = _SAMPLE
    task: str = ""


class Eval(RunEvent):
    type: Literal["eval"] = "eval"
    sample: str = _SAMPLE
    task: str = ""
    status: str = ""
    runtime_ms: float | None = None
    baseline_ms: float | None = None
    speedup: float | None = None
    speedup_ci: list[float] | None = None              # the speedup's 95% interval
    speedup_from: str | None = None                    # paired or cached
    speedups: dict[str, BaselineSpeedup] = Field(default_factory=dict)  # EvalResult.speedups
    noisy: bool = False                                # the timing did not beat the noise
    flags: list[str] = Field(default_factory=list)
    path: str | None = None                            # the candidate, relative to the run
    details: dict[str, Any] = Field(default_factory=dict)  # the task kind's result fields
    env: dict[str, Any] = Field(default_factory=dict)      # what it ran on (EvalResult.env)
    model: str | None = None  # who wrote the candidate (a predictions run); else the run's


class PhaseDone(RunEvent):
    type: Literal["phase_done"] = "phase_done"
    sample: str = _SAMPLE
    task: str = ""
    phase: int = 0
    correct: int = 0
    best_runtime_ms: float | None = None


class TaskDone(RunEvent):
    type: Literal["task_done"] = "task_done"
    task: str
    correct: bool = False
    best_runtime_ms: float | None = None
    speedup: dict[str, float | None] = Field(default_factory=dict)


class TaskSkipped(RunEvent):
    type: Literal["task_skipped"] = "task_skipped"
    task: str
    reason: str = ""


class TaskFailed(RunEvent):
    type: Literal["task_failed"] = "task_failed"
    task: str
    error: str = ""


class BudgetExhausted(RunEvent):
    type: Literal["budget_exhausted"] = "budget_exhausted"
    reason: str = ""


class RunFinished(RunEvent):
    type: Literal["run_finished"] = "run_finished"
    status: str = "finished"


Event = Annotated[
    RunStarted | TaskStarted | Baseline | LLMCall | LLMError | LLMFailed | FormatError | Eval
    | PhaseDone | TaskDone | TaskSkipped | TaskFailed | BudgetExhausted | RunFinished,
    Field(discriminator="type")]
EVENT_TYPES: dict[str, type[RunEvent]] = {
    cls.model_fields["type"].default: cls
    for cls in (RunStarted, TaskStarted, Baseline, LLMCall, LLMError, LLMFailed, FormatError,
                Eval, PhaseDone, TaskDone, TaskSkipped, TaskFailed, BudgetExhausted,
                RunFinished)}
_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse(data: dict[str, Any]) -> RunEvent | None:
    """A logged event as its model; None for a type kbtool does not know or a malformed one."""
    if data.get("type") not in EVENT_TYPES:
        return None
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError:
        return None


def dump(event: RunEvent) -> dict[str, Any]:
    """An event as it is logged (``sample``, never the old ``step``)."""
    return event.model_dump(mode="json", exclude={"seq", "t"})
