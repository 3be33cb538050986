"""The built-in items: sizes and task types, what every item needs, ids, replay answers."""

from __future__ import annotations

import ast
import hashlib
from collections import Counter

import yaml

from kbtool.config import Config
from kbtool_plugins.repo.dataset import RepoSource, builtin_root, load
from kbtool_plugins.repo.kind import item_of
from kbtool_plugins.repo.settings import TASK_TYPES

TRANSCRIPT = builtin_root().parent / "transcripts" / "repo.yaml"


def test_at_least_30_django_and_15_packaging_items_across_the_three_tasks() -> None:
    for name, least in (("django", 30), ("packaging", 15)):
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
