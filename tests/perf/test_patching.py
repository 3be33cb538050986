"""The patch ladder and what a patch may change (real git and GNU patch on real files)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kbtool_plugins.perf.patching import (
    apply_patch,
    changed_files,
    patch_paths,
    refusal,
    snapshot,
    strip_level,
)
from kbtool_plugins.perf.releases import file_diff, is_test_path, package_dir, tree_diff

SOURCE = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(12))

pytestmark = pytest.mark.skipif(shutil.which("git") is None or shutil.which("patch") is None,
                                reason="git and GNU patch are needed")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "tree"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("")
    (root / "src" / "pkg" / "core.py").write_text(SOURCE)
    (root / "tests").mkdir()
    (root / "tests" / "test_core.py").write_text("def test(): pass\n")
    return root


def test_a_clean_git_diff_applies_with_the_first_rung(tree: Path) -> None:
    patch = file_diff("src/pkg/core.py", SOURCE, SOURCE.replace("x + 3\n", "x + 3  # three\n"))
    assert patch_paths(patch) == ["a/src/pkg/core.py", "b/src/pkg/core.py"]
    assert strip_level(patch) == 1
    applied = apply_patch(patch, tree)
    assert applied.method == "git apply" and applied.error is None
    assert "# three" in (tree / "src/pkg/core.py").read_text()


def test_miscounted_hunks_and_reindented_context_apply_on_the_second_rung(tree: Path) -> None:
    patch = file_diff("src/pkg/core.py", SOURCE, SOURCE.replace("x + 3\n", "x + 33\n"))
    # An LLM's diff: its context lines re-indented.
    assert " def f3(x):\n" in patch
    patch = patch.replace(" def f3(x):\n", " def  f3(x):\n")
    applied = apply_patch(patch, tree)
    assert applied.method == "git apply --recount --ignore-whitespace", applied
    assert applied.error is None
    assert "x + 33" in (tree / "src/pkg/core.py").read_text()


def test_a_drifted_patch_applies_with_fuzz(tree: Path) -> None:
    stale = SOURCE.replace("def f5(x):", "def f5(x):  # an old comment")
    patch = file_diff("src/pkg/core.py", stale, stale.replace("x + 5\n", "x + 55\n"))
    applied = apply_patch(patch, tree)
    assert applied.method == "patch --fuzz=5" and applied.error is None, applied
    assert applied.tried == ["git apply", "git apply --recount --ignore-whitespace",
                             "patch --fuzz=5"]
    assert "x + 55" in (tree / "src/pkg/core.py").read_text()


def test_a_patch_that_does_not_apply_leaves_the_tree_alone(tree: Path) -> None:
    before = snapshot(tree)
    applied = apply_patch("--- a/src/pkg/core.py\n+++ b/src/pkg/core.py\n@@ -1,2 +1,2 @@\n"
                          "-nothing like this\n+at all\n", tree)
    assert applied.method is None and "does not apply" in (applied.error or "")
    assert snapshot(tree) == before
    assert apply_patch("", tree).method == "empty"  # the null candidate


def test_what_a_patch_may_change(tree: Path) -> None:
    before = snapshot(tree)
    (tree / "tests" / "test_core.py").write_text("def test(): assert True\n")
    (tree / "src" / "pkg" / "fast.py").write_text("x = 1\n")
    after = snapshot(tree)
    assert changed_files(before, after) == ["src/pkg/fast.py", "tests/test_core.py"]
    assert "outside the package" in (refusal(["tests/test_core.py"], after, "src/pkg") or "")
    assert refusal(["src/pkg/fast.py"], after, "src/pkg") is None
    assert "a test file" in (refusal(["src/pkg/tests/test_x.py"], after, "src/pkg") or "")
    assert "outside" in (refusal(["sitecustomize.py"], after, "src/pkg") or "")
    assert "without an import" in (refusal(["src/pkg/evil.pth"], after, "src/pkg") or "")
    os.symlink("/etc/passwd", tree / "src" / "pkg" / "link.py")
    linked = snapshot(tree)
    assert "symbolic link" in (refusal(["src/pkg/link.py"], linked, "src/pkg") or "")
    assert is_test_path("src/pkg/conftest.py") and not is_test_path("src/pkg/core.py")


def test_the_human_patch_is_the_package_source_diff(tree: Path, tmp_path: Path) -> None:
    new = tmp_path / "new"
    shutil.copytree(tree, new)
    (new / "src/pkg/core.py").write_text(SOURCE.replace("x + 1\n", "x + 100\n"))
    (new / "tests/test_core.py").write_text("changed\n")  # tests are left out
    (new / "README").write_text("docs are left out\n")
    (new / "src/pkg/extra.py").write_text("y = 2")  # no final newline
    assert package_dir(tree, "pkg") == ("src", "src/pkg")
    diff, omitted = tree_diff(tree, new, "src/pkg")
    assert "x + 100" in diff and "changed" not in diff and "docs" not in diff and not omitted
    assert "new file mode" in diff and "\\ No newline at end of file" in diff
    assert apply_patch(diff, tree).method == "git apply"
    assert (tree / "src/pkg/extra.py").read_text() == "y = 2"


def test_the_human_patch_leaves_out_version_and_metadata_lines(tree: Path,
                                                                tmp_path: Path) -> None:
    """A release bumps ``__version__``; the package's own test of its version against the
    installed metadata then fails in the baseline's venv, so such lines are left out of the
    human patch (alone or beside the improvement), and said so."""
    (tree / "src/pkg/__init__.py").write_text('"""pkg."""\n\n__version__ = "1.0"\n'
                                              '__author__ = "A"\n\nfrom .core import f1\n')
    (tree / "src/pkg/_version.py").write_text("version = '1.0'\n__version_tuple__ = (1, 0)\n")
    new = tmp_path / "new"
    shutil.copytree(tree, new)
    (new / "src/pkg/__init__.py").write_text('"""pkg."""\n\n__version__ = "1.1"\n'
                                             '__author__ = "A"\n\nfrom .core import f1, f2\n')
    (new / "src/pkg/_version.py").write_text("version = '1.1'\n__version_tuple__ = (1, 1)\n")
    (new / "src/pkg/core.py").write_text(SOURCE.replace("x + 1\n", "x + 100\n"))
    diff, omitted = tree_diff(tree, new, "src/pkg")
    assert "1.1" not in diff and "_version.py" not in diff
    assert "x + 100" in diff and "from .core import f1, f2" in diff
    assert omitted == ['src/pkg/__init__.py: __version__ = "1.1"',
                       "src/pkg/_version.py: version = '1.1'",
                       "src/pkg/_version.py: __version_tuple__ = (1, 1)"]
    assert apply_patch(diff, tree).method == "git apply"
    assert '__version__ = "1.0"' in (tree / "src/pkg/__init__.py").read_text()
