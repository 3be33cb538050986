"""``kbtool tasks build``: items made from any repository with a test suite.

1. The repository is fetched (``repository.fetch``) and its suite, or the part ``labels``
   select, runs once under coverage with one context per test (the harness switches the
   context as each test starts): for every line of the source files, which tests ran it.
2. Methods are found with ``ast`` in the files ``files`` selects (module functions and
   methods of module-level classes, bodies of ``min_lines`` to ``max_lines`` lines); a
   method's tests are the passing tests that ran a line of its body (at most ``max_tests``,
   a seeded sample when more did).
3. A method is kept only if its tests pass with the original body (run again, alone, by the
   same judge as every candidate) and fail with the body removed.  Completion items keep the
   first half of the body's statements (kept when that half alone fails); repair items get
   one injected bug (``mutate``), kept when it makes a test fail, its failing output stored.
4. Methods are taken in a seeded order until each task type has its count; the same seed
   gives the same items.  Written: ``repo.yaml``, ``items.jsonl``, ``files.json`` (see
   ``dataset``) and ``build.yaml`` (these options: rebuild with ``kbtool tasks build
   DIR/build.yaml --out DIR``).
"""

from __future__ import annotations

import ast
import fnmatch
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from kbtool.errors import RunError
from kbtool.util.files import write_atomic
from kbtool_plugins.repo import repository
from kbtool_plugins.repo.candidate import reindent
from kbtool_plugins.repo.dataset import FILES, ITEMS, SPEC, qualname, task_id
from kbtool_plugins.repo.mutate import mutations
from kbtool_plugins.repo.repository import Repository, RepoSpec
from kbtool_plugins.repo.runner import (
    MAX_TESTS,
    RunLimits,
    RunRequest,
    RunResult,
    execute,
    run_item,
    sandboxed,
)
from kbtool_plugins.repo.settings import TASK_TYPES, RepoItem, TaskType

log = logging.getLogger(__name__)
BUILD = "build.yaml"
SURVEY_TAIL = 3000  # characters of the survey's output shown when it passed no test


class BuildOptions(BaseModel):
    """What ``kbtool tasks build`` makes items from (saved as ``build.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    spec: RepoSpec
    labels: list[str] = Field(min_length=1, description="what the survey runs: test labels "
                                                        "or paths, as the runner takes them")
    files: list[str] = Field(min_length=1, description="globs of the source files to take "
                                                       "methods from (relative paths)")
    exclude: list[str] = Field(default_factory=list, description="globs of files to skip")
    counts: dict[TaskType, int] = Field(
        default_factory=lambda: dict.fromkeys(TASK_TYPES, 10))
    seed: int = 42
    min_lines: int = Field(3, ge=1, description="shortest body kept (lines)")
    max_lines: int = Field(60, ge=1, description="longest body kept (lines)")
    max_tests: int = Field(MAX_TESTS, ge=1, le=MAX_TESTS)
    test_timeout_s: float = Field(120.0, gt=0)
    survey_timeout_s: float = Field(1800.0, gt=0)
    failing_output_chars: int = Field(20_000, ge=0)


class Method(BaseModel):
    """A method found in a source file (lines 1-based, inclusive)."""

    file_path: str
    class_name: str | None
    class_declaration: str | None
    name: str
    decorator_line: int
    start_line: int
    body_start_line: int
    end_line: int
    docstring: str | None
    docstring_end_line: int | None
    statements: list[tuple[int, int]] = Field(description="top-level body statements "
                                                          "(docstring aside): first, last line")
    indent: str

    @property
    def qualname(self) -> str:
        return f"{self.class_name}.{self.name}" if self.class_name else self.name


def find_methods(path: Path, rel: str, min_lines: int, max_lines: int) -> list[Method]:
    """Module functions and methods of module-level classes, with a body of a size worth an
    item (abstract and one-line bodies aside)."""
    text = path.read_text()
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return []
    lines = text.splitlines()
    found = []
    owners: list[tuple[ast.ClassDef | None, ast.stmt]] = [(None, node) for node in tree.body]
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            owners += [(node, child) for child in node.body]
    for owner, node in owners:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        assert node.end_lineno is not None
        first = node.body[0]
        docstring = ast.get_docstring(node, clean=True)
        statements = node.body[1:] if docstring is not None else node.body
        if first.lineno <= node.lineno or not statements:
            continue  # one-line methods
        code_lines = node.end_lineno - statements[0].lineno + 1
        abstract = len(statements) == 1 and isinstance(statements[0], (ast.Pass, ast.Raise))
        if abstract or not min_lines <= code_lines <= max_lines:
            continue
        line = lines[node.lineno - 1]
        decorators = [d.lineno for d in node.decorator_list]
        class_decl = None
        if owner is not None:
            class_decl = lines[owner.lineno - 1].strip()
        found.append(Method(
            file_path=rel, class_name=owner.name if owner else None,
            class_declaration=class_decl, name=node.name,
            decorator_line=min([*decorators, node.lineno]), start_line=node.lineno,
            body_start_line=first.lineno, end_line=node.end_lineno, docstring=docstring,
            docstring_end_line=first.end_lineno if docstring is not None else None,
            statements=[(s.lineno, s.end_lineno or s.lineno) for s in statements],
            indent=line[:len(line) - len(line.lstrip())]))
    return found


def source_files(repo: Repository, options: BuildOptions) -> list[str]:
    found = []
    for path in sorted(repo.src.rglob("*.py")):
        rel = path.relative_to(repo.src).as_posix()
        if any(fnmatch.fnmatch(rel, g) for g in options.files) and \
                not any(fnmatch.fnmatch(rel, g) for g in options.exclude):
            found.append(rel)
    return found


# -- the survey ------------------------------------------------------------------------------
class Survey(BaseModel):
    passed: list[str]
    outcomes: dict[str, int] = Field(default_factory=dict, description="tests by outcome")
    lines: dict[str, dict[int, list[str]]] = Field(description="file -> line -> tests")
    output: str = ""


def survey(repo: Repository, options: BuildOptions, files: list[str]) -> Survey:
    """Run what ``labels`` select once, pristine, under coverage (in the sandbox)."""
    limits = RunLimits(timeout_s=options.survey_timeout_s, output_tail_chars=4000)

    def work() -> dict[str, Any]:
        import coverage

        scratch = Path.cwd()
        data_file = scratch / "coverage.data"
        anchor = files[0]
        text = repo.file(anchor).read_text()
        run = execute(repo, anchor, text, [], limits, scratch, labels=options.labels,
                      coverage=data_file)
        if not run.records.started:
            raise RunError(f"the survey's harness did not start: {run.output[-2000:]}")
        data = coverage.CoverageData(basename=str(data_file))
        data.read()
        root = str(scratch / "ws") + "/"
        lines: dict[str, dict[int, list[str]]] = {}
        for measured in data.measured_files():
            rel = measured[len(root):] if measured.startswith(root) else None
            if rel in files:
                by_line = data.contexts_by_lineno(measured)
                lines[rel] = {n: sorted(c for c in ctxs if c) for n, ctxs in by_line.items()}
        passed = sorted(t for t, o in run.records.results.items() if o.outcome == "passed")
        outcomes = Counter(o.outcome for o in run.records.results.values())
        return Survey(passed=passed, outcomes=dict(outcomes), lines=lines,
                      output=run.output).model_dump(mode="json")

    outcome = sandboxed(work, limits)
    if outcome.value is None:
        raise RunError(f"the survey of {repo.spec.name} failed: "
                       f"{(outcome.error or outcome.describe_exit()).strip()[-2000:]}")
    found = Survey.model_validate(outcome.value)
    if not found.passed:  # a wrong path in labels, a missing test dependency: nothing to build on
        ran = ", ".join(f"{n} {o}" for o, n in sorted(found.outcomes.items())) or "none ran"
        raise RunError(f"the survey of {repo.spec.requirement} ({' '.join(options.labels)}) "
                       f"passed no test ({ran}): check --labels and --deps; its output "
                       f"ends:\n{found.output.strip()[-SURVEY_TAIL:]}")
    return found


# -- items ------------------------------------------------------------------------------------
def _lines(text: str, first: int, last: int) -> str:
    return "".join(text.splitlines(keepends=True)[first - 1:last])


class Builder:
    def __init__(self, repo: Repository, options: BuildOptions,
                 say: Callable[[str], None]) -> None:
        self.repo, self.options, self.say = repo, options, say
        self.limits = RunLimits(timeout_s=options.test_timeout_s,
                                output_tail_chars=options.failing_output_chars)
        self.runs = 0

    def run(self, method: Method, tests: list[str], text: str | None,
            first: int | None = None) -> RunResult:
        """The tests on the method replaced by ``text`` (from line ``first``; None: pristine)."""
        self.runs += 1
        request = RunRequest(file_path=method.file_path, replace_content=text,
                             start_line=first or method.decorator_line,
                             end_line=method.end_line, method_name=method.name, tests=tests)
        return run_item(self.repo, request, self.limits)

    def hollow(self, method: Method, source: str) -> str:
        """The method with its body removed (docstring kept, ``pass`` for the rest)."""
        keep_to = method.docstring_end_line or method.start_line
        head = _lines(source, method.decorator_line, keep_to)
        indent = _statement_indent(source, method)
        return head + f"{indent}pass\n"

    def item(self, method: Method, task: TaskType, tests: list[str],
             source: str, rng: random.Random) -> RepoItem | None:
        original = _lines(source, method.decorator_line, method.end_line)
        fields: dict[str, Any] = {}
        if task == "method_gen":
            if self.run(method, tests, self.hollow(method, source)).status != "failed":
                return None
        elif task == "completion":
            if len(method.statements) < 2:
                return None
            cut = method.statements[(len(method.statements) + 1) // 2 - 1][1]
            half = _lines(source, method.decorator_line, cut)
            indent = _statement_indent(source, method)
            if self.run(method, tests, half + f"{indent}pass\n").status != "failed":
                return None
            fields = {"half_method": half,
                      "continuation": _lines(source, cut + 1, method.end_line)}
        else:
            dedented = reindent(original, "")
            for text, description in mutations(dedented, rng.randrange(1 << 30))[:8]:
                buggy = reindent(text, method.indent)
                result = self.run(method, tests, buggy)
                if result.status == "failed":
                    fields = {"buggy_method": buggy, "bug": description,
                              "failing_output": result.report(self.options.failing_output_chars)}
                    break
            else:
                return None
        return RepoItem(
            task=task, file_path=method.file_path, class_name=method.class_name,
            class_declaration=method.class_declaration, method_name=method.name,
            declaration=_lines(source, method.start_line, method.body_start_line - 1),
            docstring=method.docstring,
            body=_lines(source, method.body_start_line, method.end_line), original=original,
            indent=method.indent, decorator_line=method.decorator_line,
            start_line=method.start_line, body_start_line=method.body_start_line,
            end_line=method.end_line, tests=tests,
            file_sha256=hashlib.sha256(source.encode()).hexdigest(), **fields)


def _statement_indent(source: str, method: Method) -> str:
    line = source.splitlines()[method.statements[0][0] - 1]
    return line[:len(line) - len(line.lstrip())]


def method_tests(method: Method, found: Survey, passed: set[str], max_tests: int,
                 rng: random.Random) -> list[str]:
    by_line = found.lines.get(method.file_path, {})
    first = method.statements[0][0]
    tests = sorted({t for n, ts in by_line.items() if first <= int(n) <= method.end_line
                    for t in ts if t in passed})
    if len(tests) > max_tests:
        tests = sorted(rng.sample(tests, max_tests))
    return tests


def build(options: BuildOptions, cache_dir: Path, out: Path,
          say: Callable[[str], None] = print) -> list[RepoItem]:
    """Make the items and write the folder ``out`` (see the module docstring)."""
    repo = repository.fetch(options.spec, cache_dir)
    files = source_files(repo, options)
    if not files:
        raise RunError(f"no file of {repo.spec.name} matches {options.files}")
    say(f"surveying {repo.spec.requirement}: {' '.join(options.labels)} under coverage")
    found = survey(repo, options, files)
    passed = set(found.passed)
    say(f"{len(passed)} tests passed; looking for methods in {len(files)} files")
    rng = random.Random(options.seed)
    methods = [m for rel in files
               for m in find_methods(repo.file(rel), rel, options.min_lines, options.max_lines)]
    methods.sort(key=lambda m: (m.file_path, m.start_line))
    rng.shuffle(methods)
    builder = Builder(repo, options, say)
    wanted = {t: n for t, n in options.counts.items() if n > 0}
    made: dict[TaskType, list[RepoItem]] = {t: [] for t in TASK_TYPES}
    sources = {rel: repo.file(rel).read_text() for rel in files}
    turn = 0
    for method in methods:
        open_types = [t for t in TASK_TYPES if len(made[t]) < wanted.get(t, 0)]
        if not open_types:
            break
        method_rng = random.Random(f"{options.seed}/{method.file_path}/{method.qualname}")
        tests = method_tests(method, found, passed, options.max_tests, method_rng)
        if not tests:
            continue
        source = sources[method.file_path]
        if builder.run(method, tests, None).status != "passed":
            continue  # not green alone (order-dependent or flaky): no fair item
        for offset in range(len(open_types)):
            task = open_types[(turn + offset) % len(open_types)]
            item = builder.item(method, task, tests, source, method_rng)
            if item is not None:
                made[task].append(item)
                turn += 1
                say(f"  {task:10} {method.file_path}:{method.start_line} {method.qualname} "
                    f"({len(tests)} tests)")
                break
    items = [item for t in TASK_TYPES for item in made[t]]
    if not items:  # an empty folder would pass for a data set
        with_tests = sum(1 for m in methods if method_tests(
            m, found, passed, options.max_tests, random.Random(0)))
        raise RunError(f"no item could be made from {repo.spec.requirement}: {len(methods)} "
                       f"methods of {options.min_lines}-{options.max_lines} body lines in "
                       f"{len(files)} files, {with_tests} of them run by a passing test, none "
                       f"kept (widen --files or --labels); nothing written to {out}")
    short = {t: wanted[t] - len(made[t]) for t in wanted if len(made[t]) < wanted[t]}
    if short:
        log.warning("fewer items than asked for: %s short (widen labels or files)",
                    ", ".join(f"{n} {t}" for t, n in short.items()))
    write(out, repo.spec, options, items, sources)
    say(f"{len(items)} items ({builder.runs} test runs) written to {out}")
    return items


def write(out: Path, spec: RepoSpec, options: BuildOptions, items: list[RepoItem],
          sources: dict[str, str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    used = sorted({item.file_path for item in items})
    write_atomic(out / SPEC, yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    write_atomic(out / ITEMS, "".join(item.model_dump_json() + "\n" for item in items))
    write_atomic(out / FILES, json.dumps({rel: sources[rel] for rel in used}, indent=0))
    pinned = options.model_copy(update={"spec": spec})
    write_atomic(out / BUILD, yaml.safe_dump(pinned.model_dump(mode="json"), sort_keys=False))


def transcript(spec: RepoSpec, items: list[RepoItem]) -> dict[str, Any]:
    """Replies for ``replay/builtin`` (not model output): per item, a first answer that is
    right, wrong or has no code, and a right one after feedback (some never get right),
    so an offline multi-turn run takes every path."""
    tasks: dict[str, Any] = {}
    block = "```python\n{}```\n"
    for number, item in enumerate(items, 1):
        # As the file has them (indented): the check re-indents what it is given.
        right = (item.continuation if item.task == "completion" else item.original) or ""
        if item.task == "repair":
            wrong = item.buggy_method or ""
        elif item.task == "completion":
            wrong = f"{item.indent}    pass\n"
        else:
            wrong = f"{item.declaration}{item.indent}    pass\n"
        first, then = {0: (block.format(right), block.format(right)),
                       1: (block.format(wrong), block.format(right)),
                       2: ("I would change the method as follows, but I am not sure.",
                           block.format(right)),
                       3: (block.format(wrong), block.format(wrong))}[number % 4]
        tasks[task_id(spec, item, number)] = {
            "generate": [f"Here is the {qualname(item)} you asked for.\n\n{first}"],
            "fix": [f"Corrected after the test output.\n\n{then}"]}
    return tasks
