"""The ``repo`` task kind: write, complete or repair one method of a real repository; the
repository's own tests judge it.

Parent side: the item's prompts (the file around the method, the half method, the buggy
method and its failing output), the candidate's shape, the repository fetched before the
first check (``prepare``).  Child side (``check``, in an isolated child under the sandbox):
the candidate becomes an edit of the pristine file (``candidate``), and ``runner.judge``
runs the item's tests on it in a fresh workspace.  Verdicts: every selected test passed ->
``ok``; one did not -> ``incorrect``; no single method of the right name, or a file that does
not parse -> ``compile_error``; the tests ran out of time -> ``timeout``; a forged record,
tampering or a written repository file -> ``rejected``; tests that could not run at all are
retried (``infra_retries``) and then reported as ``runtime_error`` with the flag
``infrastructure`` (never the model's fault: reports leave such items out).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.task.kind import TaskKind
from kbtool_plugins.repo import dataset, repository
from kbtool_plugins.repo.candidate import CandidateError, edit_for
from kbtool_plugins.repo.patch import diff_edit, is_diff
from kbtool_plugins.repo.settings import RepoDetails, RepoPayload, RepoSettings

if TYPE_CHECKING:  # names for annotations only: listing tasks does not import them
    from kbtool.config import Config
    from kbtool.evaluation.result import EvalResult
    from kbtool.report.sections import KindReport, RunView
    from kbtool.sandbox.isolation import Reporter
    from kbtool.task.model import Task
    from kbtool.timing.base import Timer
    from kbtool_plugins.repo.runner import RunLimits, RunRequest, RunResult

TEMPLATES = Path(str(importlib.resources.files("kbtool_templates"))) / "repo"
INFRASTRUCTURE = "infrastructure"
# What the model is asked for, by task type.
STATEMENTS = {
    "method_gen": "Write the body of the method `{name}` of `{file}` (marked below): return "
                  "the whole method, from its `def` line to the end of its body, in one "
                  "```python block.",
    "completion": "Complete the method `{name}` of `{file}`: its first half is given below; "
                  "return the lines that follow it, to the end of the method, in one "
                  "```python block.",
    "repair": "The method `{name}` of `{file}` has a bug that makes some of the repository's "
              "tests fail (their output is below). Return the whole fixed method, from its "
              "`def` line to the end of its body, in one ```python block.",
}
MARK = "# >>> {what} <<<"


def settings(config: Config) -> RepoSettings:
    return config.section(RepoSettings)


def item_of(task: Task) -> RepoPayload:
    return RepoPayload.model_validate(task.payload)


def _replace(item: RepoPayload, text: str) -> str:
    """The pristine file with the method (decorators included) replaced by ``text``."""
    lines = item.file_text.splitlines(keepends=True)
    if text and not text.endswith("\n"):
        text += "\n"
    return "".join([*lines[:item.decorator_line - 1], text, *lines[item.end_line:]])


def skeleton(item: RepoPayload) -> str:
    """The method as the model sees it for method generation: its decorators, declaration
    and docstring, then a mark where the body goes."""
    lines = item.file_text.splitlines(keepends=True)
    head = "".join(lines[item.decorator_line - 1:item.start_line - 1]) + item.declaration
    if not head.endswith("\n"):
        head += "\n"
    body_indent = item.indent + "    "
    doc = ""
    if item.docstring is not None:
        doc = f'{body_indent}"""{item.docstring}"""\n' if "\n" not in item.docstring else \
            f'{body_indent}"""\n{item.docstring}\n{body_indent}"""\n'
    return head + doc + body_indent + MARK.format(what="the body goes here") + "\n"


def file_context(item: RepoPayload) -> str:
    """The file as the prompt shows it, by task type."""
    if item.task == "repair":
        assert item.buggy_method is not None
        return _replace(item, item.buggy_method)
    if item.task == "completion":
        assert item.half_method is not None
        half = item.half_method if item.half_method.endswith("\n") else item.half_method + "\n"
        lead = half.splitlines()[-1]
        indent = lead[:len(lead) - len(lead.lstrip())]
        return _replace(item, half + indent + MARK.format(what="continue from here") + "\n")
    return _replace(item, skeleton(item))


def spans(item: RepoPayload) -> dict[str, list[int]]:
    """The seed's 0-based spans (inclusive) of the declaration and the body."""
    return {"declaration_span": [item.start_line - 1, item.body_start_line - 2],
            "body_span": [item.body_start_line - 1, item.end_line - 1]}


class RepoKind(TaskKind):
    """A method of a repository, judged by the repository's own tests."""

    name = "repo"
    description = "write, complete or repair a method of a repository; its own tests judge"
    payload_model = RepoPayload
    settings_model = RepoSettings
    details_model = RepoDetails
    templates = TEMPLATES
    row_columns = dataset.ROW_COLUMNS
    preload = ("kbtool_plugins.repo.runner",)  # what a check runs, imported by the zygote

    # -- parent side ------------------------------------------------------------------------
    def tasks_from_rows(self, rows: list[dict[str, Any]], source: str,
                        config: Config) -> list[Task]:
        return dataset.tasks_from_rows(rows, source)

    def prepare(self, task: Task, config: Config) -> None:
        """Fetch the repository (pip, once per release): the sandboxed check has no network."""
        repository.fetch(item_of(task).spec, config.cache_dir)

    def describe(self, task: Task) -> str:
        item = item_of(task)
        if item.task == "repair":
            return f"{item.buggy_method}\n--- failing output ---\n{item.failing_output}"
        if item.task == "completion":
            return f"{item.half_method}{MARK.format(what='continue from here')}\n"
        return skeleton(item)

    def fields(self, task: Task) -> dict[str, Any]:
        item = item_of(task)
        data = item.model_dump(mode="json", exclude={"file_text"})
        data["repo"] = data.pop("spec")["name"]
        # The file as the prompts show it: what a unified diff answer is made against.
        return {**data, **spans(item), "context": file_context(item)}

    def labels(self, task: Task) -> dict[str, str]:
        item = item_of(task)
        return {"task": item.task, "repo": item.spec.name}

    def prompt_context(self, task: Task, config: Config) -> dict[str, str]:
        item = item_of(task)
        output = item.failing_output or ""
        return {"reference": self.describe(task), "task_type": item.task,
                "repo": f"{item.spec.name} ({item.spec.requirement})",
                "file_path": item.file_path, "method_name": item.method_name,
                "class_name": item.class_name or "", "context": file_context(item),
                "statement": STATEMENTS[item.task].format(name=item.method_name,
                                                          file=item.file_path),
                "failing_output": (f"Output of the failing tests (tail):\n```\n"
                                   f"{output[-settings(config).feedback_chars:]}\n```\n"
                                   if output else "")}

    def null_candidate(self, task: Task) -> str | None:
        item = item_of(task)
        return item.continuation if item.task == "completion" else item.original

    def feedback(self, result: EvalResult, config: Config) -> str:
        tail = (result.error or "")[-settings(config).feedback_chars:]
        if result.status.value == "compile_error":
            return f"Your answer could not be used: {tail}"
        if result.status.value == "timeout":
            return f"The tests ran out of time ({settings(config).test_timeout_s:g} s).\n{tail}"
        return f"The tests did not all pass.\n{tail}"

    def report(self, view: RunView) -> KindReport | None:
        from kbtool_plugins.repo.report import repo_report

        return repo_report(view)

    # -- child side -------------------------------------------------------------------------
    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        return {}

    def check(self, task: Task, candidate: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        from kbtool_plugins.repo.runner import RunLimits, RunRequest, RunResult

        item = item_of(task)
        own = settings(config)
        base = {"task_type": item.task, "tests_total": len(item.tests)}
        report.stage("load")
        text = candidate.read_text()
        try:
            # A unified diff of the repository (a predictions file's model_patch) answers
            # with the method as it makes it (``patch``); anything else is the method.
            edit = diff_edit(item, item.file_text, file_context(item), text,
                             Path.cwd() / "patched") if is_diff(text) else edit_for(item, text)
        except CandidateError as exc:
            return {**base, "status": "compile_error", "error": str(exc)}
        request = RunRequest(file_path=item.file_path, replace_content=edit.text,
                             start_line=edit.start_line, end_line=edit.end_line,
                             method_name=item.method_name, tests=item.tests)
        limits = RunLimits(timeout_s=own.test_timeout_s, memory_mb=config.memory_limit_mb,
                           output_tail_chars=config.output_tail_chars)
        repo = repository.find(item.spec, config.cache_dir)
        report.stage("tests")
        result = None
        for attempt in range(own.infra_retries + 1):
            if repo is None:
                break
            scratch = Path.cwd() / f"attempt{attempt}"
            scratch.mkdir()
            try:
                result = run_tests(own.repo_engine, repo, request, limits, scratch)
            except Exception as exc:  # the judge's own failure (a mount, a disk): not the model's
                result = RunResult(status="infrastructure", total=len(item.tests),
                                   infrastructure_error=f"{type(exc).__name__}: {exc}"[:2000])
            if result.status != "infrastructure":
                break
        if result is None:
            result = RunResult(status="infrastructure", total=len(item.tests),
                               infrastructure_error=f"{item.spec.requirement} is not in the "
                                                    f"cache {config.cache_dir}")
        return {**base, **verdict(result)}

    def audit(self, task: Task, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        """``kbtool tasks check``: the pristine method passes the item's tests (the default),
        the item's fields agree with the pristine file, and the tests fail without the
        method (a stub that raises) and, for a repair, with the buggy method."""
        import hashlib

        from kbtool.task.model import TaskAudit

        found = TaskAudit.model_validate(super().audit(task, config, timer, report))
        item = item_of(task)
        lines = item.file_text.splitlines(keepends=True)
        if hashlib.sha256(item.file_text.encode()).hexdigest() != item.file_sha256:
            found.problems.append("file_sha256 is not the SHA-256 of file_text")
        repo = repository.find(item.spec, config.cache_dir)
        pristine = repo.src / item.file_path if repo is not None else None
        if pristine is not None and (not pristine.is_file() or
                                     pristine.read_text() != item.file_text):
            found.problems.append(f"file_text is not {item.file_path} of {item.spec.requirement}")
        if not item.decorator_line <= item.start_line < item.body_start_line <= item.end_line \
                <= len(lines):
            found.problems.append("the line numbers are out of order or past the file's end")
        elif "".join(lines[item.decorator_line - 1:item.end_line]).rstrip() != \
                item.original.rstrip() or f"def {item.method_name}" not in \
                lines[item.start_line - 1]:
            found.problems.append(f"lines {item.decorator_line}-{item.end_line} of the file are "
                                  f"not the method {item.method_name} (original)")
        stub = f"{item.indent}    raise NotImplementedError\n"
        tries = {"a stub that raises": stub if item.task == "completion"
                 else f"{item.declaration.rstrip()}\n{stub}"}
        if item.task == "repair" and item.buggy_method:
            tries["the buggy method"] = item.buggy_method
        for index, (name, text) in enumerate(tries.items()):
            status = self.check_in_folder(task, text, f"audit-{index}", config, timer,
                                          report).get("status")
            if status == "ok":
                found.problems.append(f"the item's tests pass with {name} in place of the "
                                      "method: choose tests that exercise it")
            else:
                found.checked.append(f"the item's tests fail with {name} ({status})")
        return found.model_dump()


def run_tests(engine: str, repo: repository.Repository, request: RunRequest,
              limits: RunLimits, scratch: Path) -> RunResult:
    """The tests of one request, here (kbtool's sandbox) or in a container."""
    if engine == "local":
        from kbtool_plugins.repo.runner import judge

        return judge(repo, request, limits, scratch)
    from kbtool_plugins.repo.containers import judge_in_container

    return judge_in_container(engine, repo, request, limits, scratch)


def verdict(result: RunResult) -> dict[str, Any]:
    """A run's result as the fields of an ``EvalResult``."""
    status = {"passed": "ok", "failed": "incorrect", "syntax_error": "compile_error",
              "timeout": "timeout", "rejected": "rejected",
              "infrastructure": "runtime_error"}[result.status]
    fields: dict[str, Any] = {
        "status": status, "correct": status == "ok", "tests_passed": result.passed,
        "tests_total": result.total,
        "test_outcomes": {o.test: o.outcome for o in result.outcomes}}
    if status != "ok":
        fields["error"] = result.report()
    if result.status == "rejected":
        fields["findings"] = list(result.problems)
    if result.status == "infrastructure":
        fields["flags"] = [INFRASTRUCTURE]
        fields["findings"] = [f"{INFRASTRUCTURE}: {result.infrastructure_error}"]
        fields["infrastructure_error"] = result.infrastructure_error
    return fields
