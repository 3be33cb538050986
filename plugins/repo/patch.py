"""A unified diff of the repository as a repository item's answer (SWE-bench's
``model_patch``).

The rule: the diff is made against the item's file **as the prompts show it** (``context``
in ``kbtool tasks show --json``: the pristine file with the method replaced by its skeleton
for ``method_gen``, by the half method for ``completion``, by the buggy method for
``repair``).  It is applied to that file (the perf kind's ladder: ``git apply``, then
``--recount --ignore-whitespace``, then ``patch --fuzz=5``), and the answer is what then
stands where the method stood, from its first decorator to the end of its body: it must be
exactly one method of the item's name, as any answer (``candidate.RULE``), and replaces the
original method.  The diff may change nothing else: another file, or a line of the item's
file outside the method (an import, a helper), is refused as a method with something around
it is (``compile_error``: imports and helpers go inside the method).
"""

from __future__ import annotations

import re
from pathlib import Path

from kbtool_plugins.perf.patching import apply_patch, patch_paths, strip_level
from kbtool_plugins.repo.candidate import RULE, CandidateError, Edit, _single_def
from kbtool_plugins.repo.settings import RepoItem

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@", re.MULTILINE)
_HEADER = re.compile(r"^--- \S.*\n\+\+\+ \S", re.MULTILINE)


def is_diff(text: str) -> bool:
    """Whether an answer is a unified diff (file headers and a hunk) rather than code: no
    Python method has a line that begins ``--- x`` followed by ``+++ y``, and ``@@ -1 +1 @@``."""
    return bool(_HEADER.search(text) and _HUNK.search(text))


def diff_edit(item: RepoItem, pristine: str, shown: str, diff: str, scratch: Path) -> Edit:
    """The edit a diff of ``shown`` (the file as the prompts show it; ``pristine``: as the
    repository has it) makes of the item's method (the rule above); ``scratch``: an empty
    folder to apply it in."""
    level = strip_level(diff)
    others = sorted({p.split("/", level)[-1] for p in patch_paths(diff)} - {item.file_path})
    if others:
        raise CandidateError(f"the patch changes {', '.join(others[:3])}: an answer to this "
                             f"item changes only the method {item.method_name} of "
                             f"{item.file_path}")
    target = scratch / item.file_path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(shown)
    applied = apply_patch(diff, scratch)
    if applied.error is not None:
        raise CandidateError(f"{applied.error} to {item.file_path} as the prompt shows it")
    # The shown file is the pristine one around the method: the lines before its first
    # decorator and after its end must come out of the patch as they went in.
    lines = pristine.splitlines(keepends=True)
    before, after = lines[:item.decorator_line - 1], lines[item.end_line:]
    patched = target.read_text().splitlines(keepends=True)
    changed = next((i for i, line in enumerate(before)
                    if i >= len(patched) or patched[i] != line), None)
    if changed is None and len(patched) < len(before) + len(after):
        changed = len(before)
    if changed is None:
        moved = next((i for i in range(1, len(after) + 1) if patched[-i] != after[-i]), None)
        changed = None if moved is None else len(patched) - moved
    if changed is not None:
        raise CandidateError(f"the patch changes line {changed + 1} of {item.file_path}, "
                             f"outside the method {item.method_name}: "
                             + RULE.format(name=item.method_name))
    method = "".join(patched[len(before):len(patched) - len(after)])
    _single_def(method, item.method_name)
    return Edit(item.decorator_line, item.end_line, method)
