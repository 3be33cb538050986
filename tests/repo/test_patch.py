"""A unified diff as a repository item's answer: made against the file as the prompt shows
it, applied with git, and what stands where the method stood is the answer; nothing else
of the file, or another file, may change."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from kbtool.config import load_config
from kbtool.task import catalog
from kbtool_plugins.repo.candidate import CandidateError
from kbtool_plugins.repo.kind import file_context, item_of
from kbtool_plugins.repo.patch import diff_edit, is_diff
from kbtool_plugins.repo.settings import RepoPayload

ITEMS = {"repair": "repo/packaging/repair/13", "method_gen": "repo/packaging/method_gen/1",
         "completion": "repo/packaging/completion/8"}


def payload(kind: str) -> RepoPayload:
    return item_of(catalog.resolve(ITEMS[kind], load_config({})))


def diff(item: RepoPayload, new_text: str, path: str | None = None) -> str:
    name = path or item.file_path
    return "".join(difflib.unified_diff(file_context(item).splitlines(keepends=True),
                                        new_text.splitlines(keepends=True),
                                        f"a/{name}", f"b/{name}"))


def answered(item: RepoPayload, method: str) -> str:
    """The shown file with the shown method (skeleton, half, buggy) replaced by ``method``."""
    lines = item.file_text.splitlines(keepends=True)
    before, after = lines[:item.decorator_line - 1], lines[item.end_line:]
    return "".join(before) + method + "".join(after)


@pytest.mark.parametrize("kind", list(ITEMS))
def test_the_method_the_diff_makes_is_the_answer(kind: str, tmp_path: Path) -> None:
    item = payload(kind)
    patch = diff(item, answered(item, item.original))
    assert is_diff(patch) and not is_diff(item.original)
    edit = diff_edit(item, item.file_text, file_context(item), patch, tmp_path)
    assert (edit.start_line, edit.end_line) == (item.decorator_line, item.end_line)
    assert edit.text == item.original


def test_changes_outside_the_method_are_refused(tmp_path: Path) -> None:
    item = payload("repair")
    fixed = answered(item, item.original)
    with_import = "import os\n" + fixed
    with pytest.raises(CandidateError, match=r"changes line 1 of src/packaging/version\.py, "
                                             r"outside the method __le__.*imports and helpers"):
        diff_edit(item, item.file_text, file_context(item), diff(item, with_import),
                  tmp_path / "a")
    helper = answered(item, item.original + "\n    def helper(self):\n        return 1\n")
    with pytest.raises(CandidateError, match="exactly one method"):
        diff_edit(item, item.file_text, file_context(item), diff(item, helper), tmp_path / "b")
    lines = fixed.splitlines(keepends=True)
    lines[-1] = lines[-1].rstrip("\n") + "  # changed\n"
    with pytest.raises(CandidateError, match=f"changes line {len(lines)} of"):
        diff_edit(item, item.file_text, file_context(item), diff(item, "".join(lines)),
                  tmp_path / "c")


def test_other_files_and_diffs_that_do_not_apply_are_refused(tmp_path: Path) -> None:
    item = payload("repair")
    other = diff(item, answered(item, item.original), path="src/packaging/utils.py")
    with pytest.raises(CandidateError, match=r"changes src/packaging/utils\.py"):
        diff_edit(item, item.file_text, file_context(item), other, tmp_path / "a")
    # A line it takes out is not in the file (a diff of another version of it).
    fix = diff(item, answered(item, item.original))
    removed = next(line for line in fix.splitlines() if line.startswith("-    "))
    stale = fix.replace(removed + "\n", "-        if not frobnicate(other):\n")
    with pytest.raises(CandidateError, match="does not apply"):
        diff_edit(item, item.file_text, file_context(item), stale, tmp_path / "b")
