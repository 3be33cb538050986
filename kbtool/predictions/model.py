"""The schemas of predictions: a line of a predictions file, and what a run records."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Prediction(BaseModel):
    """One prediction, as SWE-bench's and GSO's harnesses read them; other fields (a model's
    full output, costs) are allowed and ignored."""

    model_config = ConfigDict(extra="allow", strict=True)

    instance_id: str = Field(min_length=1, description="the task's id (kbtool tasks list)")
    model_name_or_path: str = Field(min_length=1, description="who wrote it")
    model_patch: str | None = Field(description="the candidate: a unified diff (perf, repo) "
                                                "or code; null is the empty patch")


class PredictionRecord(BaseModel):
    """``prediction.json`` beside a predictions run's candidate: what it is and whose."""

    model_config = ConfigDict(extra="forbid")

    instance_id: str = Field(description="as the predictions file named it")
    task: str = Field(description="the task it resolved to")
    model: str
    sample: int = Field(ge=0, description="this model's n-th prediction for the task (from 0)")
    key: str = Field(description="sha256 of task, model and patch: what is judged once")
    source: str = Field(description="where it was read: a file and line, or a kernel file")


class PredictionsManifest(BaseModel):
    """``predictions.json`` at the root of a predictions run."""

    model_config = ConfigDict(extra="forbid")

    sources: list[str] = Field(default_factory=list,
                               description="every predictions file or folder judged into it")
    models: list[str] = Field(default_factory=list, description="in order of appearance")
    eval_settings: str = Field(description="the settings that change a verdict, as JSON: a "
                                           "later call must judge with the same")
