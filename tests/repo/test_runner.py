"""The runner on real repositories: Django 5.2's own tests/runtests.py and packaging's pytest
suite, each check in a fresh sandboxed workspace; hostile methods never pass."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from kbtool_plugins.repo.build import Method, find_methods
from kbtool_plugins.repo.candidate import reindent
from kbtool_plugins.repo.repository import Repository
from kbtool_plugins.repo.runner import (
    MAX_TESTS,
    RequestError,
    RunLimits,
    RunRequest,
    RunResult,
    run_item,
)

HOSTILE = Path(__file__).parent / "hostile"
TEXT = "django/utils/text.py"
TESTS = ["utils_tests.test_text.TestUtilsText.test_wrap",
         "utils_tests.test_text.TestUtilsText.test_slugify"]
LIMITS = RunLimits(timeout_s=60)


def method(repo: Repository, rel: str, name: str) -> Method:
    return next(m for m in find_methods(repo.file(rel), rel, 1, 10_000) if m.name == name)


def check_wrap(repo: Repository, candidate: str | None, limits: RunLimits = LIMITS,
               sandbox: str = "auto") -> RunResult:
    wrap = method(repo, TEXT, "wrap")
    request = RunRequest(file_path=TEXT, start_line=wrap.decorator_line, end_line=wrap.end_line,
                         replace_content=None if candidate is None else reindent(candidate, ""),
                         method_name="wrap", tests=TESTS)
    return run_item(repo, request, limits, sandbox=sandbox)  # type: ignore[arg-type]


def test_the_pristine_repository_passes_its_tests(django: Repository) -> None:
    result = check_wrap(django, None)
    assert result.status == "passed", result.report()
    assert (result.passed, result.total) == (2, 2)
    assert [o.outcome for o in result.outcomes] == ["passed", "passed"]
    assert result.edited_file is None
    assert "no network" in result.sandbox and "overlay workspace" in result.sandbox


def test_an_honest_method_passes_and_its_file_is_returned(django: Repository) -> None:
    honest = (HOSTILE / "honest.py").read_text()
    result = check_wrap(django, honest)
    assert result.status == "passed", result.report()
    assert result.edited_file is not None
    # The docstring's blank lines and inner indentation are the candidate's own.
    assert "    A word-wrap function that preserves existing line breaks.\n\n\n" \
           "        (an indented line" in result.edited_file


@pytest.mark.parametrize(("name", "statuses"), [
    ("fake_ok_exit", {"failed"}),
    ("system_exit", {"failed"}),
    ("skips", {"failed"}),
    ("leaves_daemon", {"failed"}),
    ("writes_test_file", {"rejected"}),
    ("writes_other_module", {"rejected"}),
    ("silences_failures", {"rejected"}),
    ("weakens_asserts", {"rejected"}),
    ("replaces_tests", {"rejected"}),
    ("forges_records", {"rejected"}),
    ("import_hook", {"rejected"}),
])
def test_hostile_methods_never_pass(django: Repository, name: str, statuses: set[str]) -> None:
    result = check_wrap(django, (HOSTILE / f"{name}.py").read_text())
    assert result.status in statuses, result.report()
    assert result.passed < result.total or result.status == "rejected"
    if result.status == "rejected":
        assert result.problems


def test_a_fake_summary_and_exit_status_mean_nothing(django: Repository) -> None:
    result = check_wrap(django, (HOSTILE / "fake_ok_exit.py").read_text())
    assert "OK" in result.output  # it printed the runner's success line ...
    assert [o.outcome for o in result.outcomes] == ["not_run", "not_run"]  # ... in vain


def test_what_an_item_writes_never_reaches_the_next(django: Repository) -> None:
    assert check_wrap(django, (HOSTILE / "writes_test_file.py").read_text()).status == "rejected"
    after = check_wrap(django, None)
    assert after.status == "passed" and not after.problems
    pristine = django.src / "tests" / "utils_tests" / "test_text.py"
    assert "weakened" not in pristine.read_text()
    assert not (django.src / "django" / "utils" / "kbtool_was_here.py").exists()


def test_a_method_that_never_returns_times_out(django: Repository) -> None:
    result = check_wrap(django, (HOSTILE / "loops.py").read_text(), RunLimits(timeout_s=4))
    assert result.status == "timeout"
    assert result.wall_s < 30


def test_an_edit_that_does_not_parse_runs_no_test(django: Repository) -> None:
    result = check_wrap(django, "def wrap(text, width):\n    return (\n")
    assert result.status == "syntax_error"
    assert all(o.outcome == "not_run" for o in result.outcomes)
    assert "django/utils/text.py, line" in result.output


def test_without_namespaces_a_copy_is_judged_the_same(django: Repository) -> None:
    """sandbox=off: a copied workspace; writes are still seen, the pristine tree untouched."""
    assert check_wrap(django, None, sandbox="off").status == "passed"
    result = check_wrap(django, (HOSTILE / "writes_test_file.py").read_text(), sandbox="off")
    assert result.status == "rejected", result.report()
    assert "copy workspace" in result.sandbox
    assert "weakened" not in (django.src / "tests" / "utils_tests" / "test_text.py").read_text()


def test_a_harness_that_cannot_start_is_infrastructure(django: Repository) -> None:
    """Too little memory for Python to start: no test ran, and it is not the method's fault."""
    result = check_wrap(django, None, RunLimits(timeout_s=30, memory_mb=8))
    assert result.status == "infrastructure"
    assert result.infrastructure_error


def test_requests_outside_the_repository_are_refused(django: Repository) -> None:
    with pytest.raises(ValidationError, match="inside the repository"):
        RunRequest(file_path="../etc/passwd.py", tests=TESTS)
    with pytest.raises(ValidationError, match="inside the repository"):
        RunRequest(file_path="/etc/x.py", tests=TESTS)
    with pytest.raises(ValidationError, match=f"at most {MAX_TESTS}"):
        RunRequest(file_path=TEXT, tests=[f"t{i}" for i in range(MAX_TESTS + 1)])
    with pytest.raises(ValidationError, match="not a test id"):
        RunRequest(file_path=TEXT, tests=["--help"])
    with pytest.raises(RequestError, match="not a file") as missing:
        run_item(django, RunRequest(file_path="django/nowhere.py", tests=TESTS))
    assert missing.value.field == "file_path"
    with pytest.raises(RequestError, match="lines"):
        RunRequest(file_path=TEXT, replace_content="x = 1\n", start_line=1,
                   end_line=100_000, tests=TESTS).edited_text(django)


def test_pytest_outcomes_per_test(packaging: Repository) -> None:
    """pytest (packaging): passes, a failure after an edit, an id that does not exist."""
    rel = "src/packaging/utils.py"
    canonical = method(packaging, rel, "canonicalize_name")
    tests = ["tests/test_utils.py::test_canonicalize_name[foo-foo]",
             "tests/test_utils.py::test_canonicalize_name[Foo-foo]"]
    pristine = run_item(packaging, RunRequest(file_path=rel, tests=tests), LIMITS)
    assert pristine.status == "passed", pristine.report()
    broken = reindent("def canonicalize_name(name, *, validate=False):\n    return name\n", "")
    result = run_item(packaging, RunRequest(
        file_path=rel, replace_content=broken, start_line=canonical.decorator_line,
        end_line=canonical.end_line, tests=tests), LIMITS)
    assert result.status == "failed"
    assert [o.outcome for o in result.outcomes] == ["passed", "failed"]
    assert "AssertionError" in result.outcomes[1].detail
