"""Every registered task kind keeps the task-kind contract (kbtool.task.contract)."""

from __future__ import annotations

from typing import Any

import pytest

from kbtool.config import Config
from kbtool.errors import KbtoolError
from kbtool.plugin import registry
from kbtool.task.contract import check_kind, check_task
from kbtool.task.kind import TaskKind
from kbtool.task.model import Task

KINDS = sorted(registry.TASK_KINDS.all())


def a_task_of(kind: str) -> Task | None:
    """The first task of ``kind`` any registered source lists with default settings."""
    for source in registry.TASK_SOURCES.all().values():
        try:
            tasks = source.tasks(Config())
        except KbtoolError:
            continue  # a source that needs settings (a path) we do not have here
        found = next((t for t in tasks if t.kind == kind), None)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("name", KINDS)
def test_kind_keeps_the_contract(name: str) -> None:
    assert check_kind(name, registry.TASK_KINDS.get(name)) == []


@pytest.mark.parametrize("name", KINDS)
def test_kind_works_on_its_own_tasks(name: str) -> None:
    task = a_task_of(name)
    if task is None:
        pytest.skip(f"no registered source lists a task of kind {name!r} without settings")
    assert check_task(registry.TASK_KINDS.get(name), task) == []


class Broken(TaskKind):
    name = "other-name"
    baselines = ("eager", "eager")
    candidate_suffix = "py"
    row_columns = ("code",)


def test_the_contract_check_finds_what_is_wrong() -> None:
    problems = check_kind("broken", Broken())
    assert any("calls itself 'other-name'" in p for p in problems)
    assert any("does not implement check()" in p for p in problems)
    assert any("distinct" in p for p in problems)
    assert any("candidate_suffix" in p for p in problems)
    assert any("does not implement tasks_from_rows()" in p for p in problems)
    assert check_kind("object", object()) == ["object: does not subclass "
                                              "kbtool.task.kind.TaskKind"]


def test_a_kind_with_a_broken_round_trip_is_caught() -> None:
    class Lossy(TaskKind):
        def extract_candidate(self, reply: str) -> str | None:
            return "something else\n"

        def check(self, *args: Any) -> dict[str, Any]:
            return {}

    task = Task(id="x/1", source="x", name="1", kind="lossy")
    assert any("extract_candidate" in p for p in check_task(Lossy(), task))


def test_a_kind_that_reads_files_otherwise_than_replies_is_caught() -> None:
    class Literal(TaskKind):
        def candidate_from_file(self, text: str) -> str:
            return text  # a reply saved to a file would be checked with its prose

        def check(self, *args: Any) -> dict[str, Any]:
            return {}

    task = Task(id="x/1", source="x", name="1", kind="literal")
    assert any("candidate_from_file" in p for p in check_task(Literal(), task))
