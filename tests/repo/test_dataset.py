"""The built-in items: sizes and task types, what every item needs, ids, replay answers."""

from __future__ import annotations

import ast
import hashlib
from collections import Counter

import pytest
import yaml

from kbtool.config import Config, load_config
from kbtool.errors import UsageError
from kbtool_plugins.repo.dataset import RepoSource, builtin_root, load
from kbtool_plugins.repo.kind import item_of
from kbtool_plugins.repo.settings import TASK_TYPES
from tests.helpers import run_kbtool

TRANSCRIPT = builtin_root().parent / "transcripts" / "repo.yaml"


def test_at_least_30_django_30_sympy_and_15_packaging_items_across_the_three_tasks() -> None:
    for name, least in (("django", 30), ("sympy", 30), ("packaging", 15)):
        data = load(builtin_root() / name)
        assert len(data.items) >= least
        assert set(Counter(i.task for i in data.items)) == set(TASK_TYPES)
        assert data.spec.sha256 and (builtin_root() / name / "build.yaml").is_file()


def test_every_item_is_complete_and_consistent() -> None:
    for task in RepoSource().tasks(Config()):
        item = item_of(task)
        lines = item.file_text.splitlines(keepends=True)
        assert hashlib.sha256(item.file_text.encode()).hexdigest() == item.file_sha256
        assert "".join(lines[item.decorator_line - 1:item.end_line]) == item.original
        assert 1 <= len(item.tests) <= 20
        if item.task == "completion":
            assert item.half_method is not None and item.continuation is not None
            assert item.half_method + item.continuation == item.original
        if item.task == "repair":
            assert item.buggy_method and item.bug and item.failing_output
            assert item.buggy_method != item.original
            ast.parse("".join([*lines[:item.decorator_line - 1], item.buggy_method,
                               *lines[item.end_line:]]))


def test_ids_are_unique_and_every_item_has_replay_answers() -> None:
    ids = [t.id for t in RepoSource().tasks(Config())]
    assert len(ids) == len(set(ids))
    answers = yaml.safe_load(TRANSCRIPT.read_text())["tasks"]
    assert set(ids) == set(answers)
    assert "NOT model output" in yaml.safe_load(TRANSCRIPT.read_text())["label"]


def test_a_selection_by_repository_and_task_type() -> None:
    config = load_config({"repository": "sympy", "task_types": "method_gen,repair"})
    tasks = RepoSource().tasks(config)
    assert {t.id.split("/")[1] for t in tasks} == {"sympy"}
    assert Counter(t.payload["task"] for t in tasks) == Counter(
        i.task for i in load(builtin_root() / "sympy").items if i.task != "completion")
    with pytest.raises(UsageError, match=r"unknown repository 'sympi' \(did you mean 'sympy'"):
        RepoSource().tasks(load_config({"repository": ["sympi"]}))
    listed = run_kbtool("tasks", "list", "repo", "repository=django", "task_types=repair",
                        "max_items=2")
    assert listed.returncode == 0, listed.stderr
    assert [line.split("/")[:3] for line in listed.stdout.split()] == \
        [["repo", "django", "repair"]] * 2
