"""The ``repo`` settings section, the item (the task's payload) and the result details."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kbtool.config import Section
from kbtool_plugins.repo.repository import RepoSpec

TaskType = Literal["method_gen", "completion", "repair"]
TASK_TYPES: tuple[TaskType, ...] = ("method_gen", "completion", "repair")


class RepoSettings(Section):
    """``repo:`` in the config; every key is also accepted at the top level."""

    name: ClassVar[str] = "repo"
    flat_keys: ClassVar[tuple[str, ...]] = (
        "repo_data", "repository", "task_types", "repo_engine", "test_timeout_s",
        "infra_retries", "max_iter", "feedback", "history", "feedback_chars")
    # Where items are found and which, and how the multiturn loop talks to the model: no
    # verdict depends on them (they key no evaluation and travel with no job).
    local_keys: ClassVar[tuple[str, ...]] = ("repo_data", "repository", "task_types",
                                             "max_iter", "feedback", "history",
                                             "feedback_chars")

    repo_data: list[Path] = Field(default_factory=list,
                                  description="more item folders (kbtool tasks build --out)")
    repository: list[str] = Field(
        default_factory=list, description="only the items of these data sets, by name "
                                          "(django, sympy, packaging, ...); every one when empty")
    task_types: list[TaskType] = Field(
        default_factory=list, description="only these task types (method_gen, completion, "
                                          "repair); every one when empty")
    repo_engine: Literal["local", "podman", "apptainer"] = Field(
        "local", description="where the tests run: kbtool's sandbox here, or a container")
    test_timeout_s: float = Field(60.0, gt=0, description="wall time of one test command")
    infra_retries: int = Field(2, ge=0, description="retries of a check whose tests could "
                                                   "not run (not the candidate's fault)")
    max_iter: int = Field(5, ge=1, description="multiturn: turns per item (1: single turn)")
    feedback: bool = Field(True, description="multiturn: show the test output after a turn")
    history: bool = Field(True, description="multiturn: keep earlier turns in the chat")
    feedback_chars: int = Field(20_000, ge=0, description="test output shown, from its end")

    @field_validator("repository", "task_types", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        """``repository=sympy`` and ``task_types=method_gen,repair`` (one word) are lists."""
        if isinstance(value, str):
            return [word.strip() for word in value.split(",") if word.strip()]
        return value


class RepoItem(BaseModel):
    """One item: a method of a repository, the task on it and the tests that judge it.
    Lines are 1-based and inclusive (the seed's 0-based spans are ``*_span`` in
    ``kbtool tasks show``)."""

    model_config = ConfigDict(extra="forbid")

    task: TaskType
    file_path: str = Field(description="relative to the repository root")
    class_name: str | None = None
    class_declaration: str | None = None
    method_name: str
    declaration: str = Field(description="the def line(s), decorators excluded")
    docstring: str | None = None
    body: str = Field(description="the lines after the declaration")
    original: str = Field(description="the method as it is in the repository, decorators too")
    indent: str = Field(description="the declaration's indentation")
    decorator_line: int = Field(ge=1, description="first line of the method, decorators too")
    start_line: int = Field(ge=1, description="the def line")
    body_start_line: int = Field(ge=1)
    end_line: int = Field(ge=1, description="the method's last line")
    tests: list[str] = Field(min_length=1, max_length=20)
    half_method: str | None = Field(None, description="completion: what the model is given")
    continuation: str | None = Field(None, description="completion: the rest, as written")
    buggy_method: str | None = Field(None, description="repair: the method with a bug")
    bug: str | None = Field(None, description="repair: the bug that was injected")
    failing_output: str | None = Field(None, description="repair: the failing tests' output")
    file_sha256: str = Field(description="the pristine file's SHA-256")


class RepoPayload(RepoItem):
    """A task's payload: the item, its repository and the pristine file (for prompts)."""

    spec: RepoSpec
    file_text: str


class RepoDetails(BaseModel):
    """What a repository check adds to a result (top-level keys of ``kbtool eval --json``)."""

    model_config = ConfigDict(extra="forbid")
    tests_passed: int = Field(0, description="selected tests that passed")
    tests_total: int = Field(0, description="selected tests")
    test_outcomes: dict[str, str] = Field(default_factory=dict,
                                          description="test id -> passed, failed, error, "
                                                      "skipped, not_run")
    task_type: str | None = Field(None, description="method_gen, completion or repair")
    infrastructure_error: str | None = Field(
        None, description="the tests could not run even after retries (not the model's "
                          "fault; the status is runtime_error with the flag 'infrastructure')")
