"""kbtool tasks build on real repositories (packaging and SymPy, pytest): a survey under coverage,
methods kept only when their tests pass and fail without their body, injected bugs, and
the same items again from the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbtool_plugins.repo.dataset import builtin_root, load
from kbtool_plugins.repo.repository import Repository
from tests.helpers import run_kbtool


def assert_same_items(rebuilt: Path, built: Path) -> None:
    """The same items, field by field; a repair item's failing output may differ only in the
    timings the runner prints."""
    again = [json.loads(x) for x in (rebuilt / "items.jsonl").read_text().splitlines()]
    first = [json.loads(x) for x in (built / "items.jsonl").read_text().splitlines()]
    for a, b in zip(again, first, strict=True):
        assert a.pop("failing_output") == b.pop("failing_output") or a["task"] == "repair"
        assert a == b


@pytest.mark.slow  # two builds: each surveys a test file under coverage and runs ~10 checks
def test_build_makes_items_of_every_type_and_rebuilds_them_alike(
        tmp_path: Path, repo_cache: Path, packaging: Repository) -> None:
    spec = packaging.spec
    first = tmp_path / "first"
    proc = run_kbtool("tasks", "build", spec.requirement, "--out", str(first),
                      "--runner", "pytest", "--source-root", "src", "--import-name", "packaging",
                      *[f"--deps={d}" for d in spec.deps], "--labels", "tests/test_utils.py",
                      "--files", "src/packaging/utils.py", "--method-gen", "1",
                      "--completion", "1", "--repair", "1", "--transcript",
                      str(tmp_path / "replies.yaml"), f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    data = load(first)
    assert data.spec.sha256 == spec.sha256
    assert sorted(i.task for i in data.items) == ["completion", "method_gen", "repair"]
    for item in data.items:
        assert item.file_path == "src/packaging/utils.py" and item.tests
        assert all(t.startswith("tests/test_utils.py::") for t in item.tests)
    repair = next(i for i in data.items if i.task == "repair")
    assert repair.bug and "FAILED" in (repair.failing_output or "")
    assert "repo/packaging/repair/3_" in (tmp_path / "replies.yaml").read_text()
    again = tmp_path / "again"
    proc = run_kbtool("tasks", "build", str(first / "build.yaml"), "--out", str(again),
                      f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    assert_same_items(again, first)


@pytest.mark.slow  # two builds of a few items each (SymPy imports in seconds)
def test_sympy_items_build_from_the_builtin_options_and_rebuild_alike(
        tmp_path: Path, repo_cache: Path, sympy: Repository) -> None:
    """The built-in SymPy set's own build.yaml (runner, test dependencies, pins), narrowed
    to one test file and one item of each type, builds and rebuilds the same items."""
    first = tmp_path / "first"
    proc = run_kbtool("tasks", "build", str(builtin_root() / "sympy" / "build.yaml"),
                      "--out", str(first), "--labels", "sympy/utilities/tests/test_iterables.py",
                      "--files", "sympy/utilities/iterables.py", "--method-gen", "1",
                      "--completion", "1", "--repair", "1", f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    data = load(first)
    assert data.spec == sympy.spec
    assert sorted(i.task for i in data.items) == ["completion", "method_gen", "repair"]
    for item in data.items:
        assert item.file_path == "sympy/utilities/iterables.py"
        assert all(t.startswith("sympy/utilities/tests/test_iterables.py::") for t in item.tests)
    again = tmp_path / "again"
    proc = run_kbtool("tasks", "build", str(first / "build.yaml"), "--out", str(again),
                      f"cache_dir={repo_cache}")
    assert proc.returncode == 0, proc.stderr
    assert_same_items(again, first)


def test_build_refuses_bad_options_in_one_line(tmp_path: Path) -> None:
    proc = run_kbtool("tasks", "build", "packaging==26.0", "--out", str(tmp_path / "x"),
                      "--runner", "maven", "--labels", "tests", "--files", "*.py")
    assert proc.returncode == 2
    assert "spec.runner" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_kbtool("tasks", "build", str(tmp_path / "missing.yaml"), "--out", str(tmp_path))
    assert proc.returncode == 2 and "build file not found" in proc.stderr


def test_a_survey_that_passes_no_test_fails_with_its_output(
        tmp_path: Path, repo_cache: Path, packaging: Repository) -> None:
    """A wrong --labels path (or a missing --deps) runs no test: the build fails with the
    survey's output, and writes nothing."""
    spec = packaging.spec
    out = tmp_path / "items"
    proc = run_kbtool("tasks", "build", spec.requirement, "--out", str(out),
                      "--runner", "pytest", "--source-root", "src", "--import-name", "packaging",
                      *[f"--deps={d}" for d in spec.deps], "--labels", "tests/test_nothere.py",
                      "--files", "src/packaging/utils.py", f"cache_dir={repo_cache}")
    assert proc.returncode == 1, proc.stdout
    assert "passed no test" in proc.stderr and "check --labels and --deps" in proc.stderr
    assert "tests/test_nothere.py" in proc.stderr.split("its output ends:", 1)[1]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_a_build_that_makes_no_item_fails_and_writes_nothing(
        tmp_path: Path, repo_cache: Path, packaging: Repository) -> None:
    spec = packaging.spec
    out = tmp_path / "items"
    proc = run_kbtool("tasks", "build", spec.requirement, "--out", str(out),
                      "--runner", "pytest", "--source-root", "src", "--import-name", "packaging",
                      *[f"--deps={d}" for d in spec.deps], "--labels", "tests/test_utils.py",
                      "--files", "src/packaging/__init__.py", f"cache_dir={repo_cache}")
    assert proc.returncode == 1, proc.stdout
    assert "no item could be made" in proc.stderr and "0 methods" in proc.stderr
    assert not out.exists()
