"""Run a repository's own tests on one edit, in a fresh workspace, and judge the outcome.

This is the stable API of repository checks: the ``repo`` task kind, ``kbtool tasks
build``, the sandbox service and the benchmarks all call it.

    repo = repository.fetch(spec, cache_dir)          # once: pristine, read-only
    request = RunRequest(file_path="django/utils/text.py", replace_content=new_method,
                         start_line=20, end_line=41, method_name="wrap",
                         tests=["utils_tests.test_text.TestUtilsText.test_wrap"])
    result = run_item(repo, request)                  # forks its own sandboxed child
    result.status, result.passed, result.total, result.outcomes, result.output

``run_item`` forks a child under kbtool's sandbox (``kbtool.sandbox``: no network, nothing
writable but its scratch, time and memory limits) and calls :func:`judge` there; code that
already runs in such a child (a task kind's ``check``) calls :func:`judge` itself.  Either
way, for one request:

1. the edited file is the pristine file with lines ``start_line..end_line`` (1-based,
   inclusive) replaced by ``replace_content`` (None: the pristine file); it must parse;
2. a fresh workspace is made from the pristine tree: an overlay whose upper layer is in the
   scratch (instant, and every write the run makes lands there to be seen), or a copy where
   no private mount namespace is at hand;
3. the repository's own runner (Django's ``tests/runtests.py``, pytest) runs the selected
   tests (at most 20) under ``harness.py``, which reports each test's outcome as a signed
   record: output, exit codes and summaries printed by the run never decide anything;
4. the verdict: ``passed`` when every selected test passed, ``failed`` when one did not
   (a skipped or never-run test did not pass), ``syntax_error``, ``timeout``, ``rejected``
   (a forged record, tampering with the judging machinery or the tests, a repository file
   written), or ``infrastructure`` (the harness could not start: retry; never the
   candidate's fault);
5. the workspace is dropped with the scratch: nothing an item does reaches the next.
"""

from __future__ import annotations

import ast
import contextlib
import ctypes
import hashlib
import hmac
import json
import os
import resource
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kbtool.sandbox.isolation import Limits, Outcome, run_isolated
from kbtool.sandbox.namespaces import SandboxPolicy
from kbtool_plugins.repo.repository import Repository

MAX_TESTS = 20
HARNESS = Path(__file__).with_name("harness.py")
MS_RDONLY = 1
MNT_DETACH = 2
_OUTCOMES = ("passed", "failed", "error", "skipped", "not_run")


class RequestError(ValueError):
    """A request that names something outside the repository, or lines outside its file."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class RunRequest(BaseModel):
    """One edit and the tests that judge it (the fields of the seed's ``POST /run_item``)."""

    model_config = ConfigDict(extra="forbid")

    file_path: str = Field(description="the edited file, relative to the repository root")
    replace_content: str | None = Field(
        None, description="the text that replaces start_line..end_line; None: no edit")
    start_line: int = Field(1, ge=1, description="first replaced line (1-based)")
    end_line: int = Field(0, ge=0, description="last replaced line (1-based, inclusive); "
                                               "start_line - 1 inserts before start_line")
    method_name: str = Field("", description="the method the edit is about (reports only)")
    tests: list[str] = Field(min_length=1, max_length=MAX_TESTS,
                             description=f"test ids as the repository's runner names them "
                                         f"(at most {MAX_TESTS})")

    @field_validator("file_path")
    @classmethod
    def _relative(cls, value: str) -> str:
        path = PurePosixPath(value)
        if not value or path.is_absolute() or ".." in path.parts or "\\" in value:
            raise ValueError("must be a path inside the repository (relative, no '..')")
        if path.suffix != ".py":
            raise ValueError("must name a Python file")
        return str(path)

    @field_validator("tests")
    @classmethod
    def _test_ids(cls, value: list[str]) -> list[str]:
        for test in value:
            if not test.strip() or test.startswith("-") or "\n" in test:
                raise ValueError(f"{test!r} is not a test id")
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _span(self) -> RunRequest:
        if self.end_line < self.start_line - 1:
            raise ValueError("end_line is before start_line")
        return self

    def source(self, repo: Repository) -> Path:
        """The pristine file, checked to be a file of ``repo`` (symlinks resolved)."""
        root = repo.src.resolve()
        try:
            path = (root / self.file_path).resolve()
        except OSError:  # a name too long for the file system, say
            raise RequestError("file_path", f"{self.file_path} is not a file of "
                                            f"{repo.spec.name}") from None
        if root not in path.parents:
            raise RequestError("file_path", f"{self.file_path} is outside the repository")
        if not os.path.isfile(path):  # False for names the file system refuses, too
            raise RequestError("file_path", f"{self.file_path} is not a file of "
                                            f"{repo.spec.name}")
        return path

    def edited_text(self, repo: Repository) -> str:
        """The edited file's text (the pristine text when there is no edit)."""
        text = self.source(repo).read_text()
        if self.replace_content is None:
            return text
        lines = text.splitlines(keepends=True)
        if self.end_line > len(lines):
            raise RequestError("end_line", f"{self.file_path} has {len(lines)} lines, not "
                                           f"{self.end_line}")
        new = self.replace_content
        if new and not new.endswith("\n"):
            new += "\n"
        return "".join([*lines[:self.start_line - 1], new, *lines[self.end_line:]])


def test_file(repo: Repository, test: str) -> Path | None:
    """The file (or package) of ``repo`` that a test id names, as its runner reads the id:
    pytest's ``path/to/test_x.py::Class::test`` (relative to the repository's root),
    Django's dotted ``package.test_module.Class.test`` (under ``test_root``); None when the
    repository has no such file."""
    if repo.spec.runner == "pytest":
        rel = PurePosixPath(test.split("::", 1)[0])
        path = repo.src / rel
        # os.path.exists: False for names the file system refuses (Path.exists raises)
        return path if ".." not in rel.parts and not rel.is_absolute() and \
            os.path.exists(path) else None
    parts = test.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    for end in range(len(parts), 0, -1):
        base = repo.src / repo.spec.test_root / Path(*parts[:end])
        for found in (base.with_suffix(".py"), base):
            if os.path.exists(found):
                return found
    return None


class TestOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")
    test: str
    outcome: Literal["passed", "failed", "error", "skipped", "not_run"]
    detail: str = ""


RunStatus = Literal["passed", "failed", "syntax_error", "timeout", "rejected", "infrastructure"]


class RunResult(BaseModel):
    """What one request came to."""

    model_config = ConfigDict(extra="forbid")

    status: RunStatus
    passed: int = Field(0, description="selected tests that passed")
    total: int = Field(0, description="selected tests")
    outcomes: list[TestOutcome] = Field(default_factory=list)
    output: str = Field("", description="the tail of the test run's output")
    edited_file: str | None = Field(None, description="the edited file's text")
    problems: list[str] = Field(default_factory=list,
                                description="why the run was rejected (tampering, writes)")
    infrastructure_error: str | None = Field(
        None, description="why the tests could not run (retry; not the candidate's fault)")
    wall_s: float = 0.0
    sandbox: list[str] = Field(default_factory=list, description="confinement that applied")

    def report(self, tail_chars: int = 20_000) -> str:
        """The test output as a developer reads it: per-test outcomes, then the output's
        tail (the feedback of a multi-turn loop, the REST service's ``test_output``)."""
        lines = [f"{self.passed}/{self.total} selected tests passed ({self.status})"]
        lines += [f"{o.outcome.upper():8} {o.test}" + (f": {o.detail.splitlines()[0]}"
                                                       if o.detail.strip() else "")
                  for o in self.outcomes]
        lines += [f"rejected: {p}" for p in self.problems]
        if self.infrastructure_error:
            lines.append(f"infrastructure: {self.infrastructure_error}")
        text = "\n".join(lines)
        if self.output.strip():
            text += "\n--- test output (tail) ---\n" + self.output[-tail_chars:]
        return text


class RunLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timeout_s: float = Field(60.0, gt=0, description="wall time of the test command")
    memory_mb: int = Field(4096, gt=0, description="address space of the test process")
    output_tail_chars: int = Field(20_000, ge=0)


# -- workspaces ----------------------------------------------------------------------------
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(source: str, target: Path, fstype: str, flags: int, data: str | None) -> None:
    libc = _libc()
    if libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags,
                  data.encode() if data is not None else None) != 0:
        raise OSError(ctypes.get_errno(), f"mount {fstype} on {target}: "
                                          f"{os.strerror(ctypes.get_errno())}")


def _umount(target: Path) -> None:
    _libc().umount2(str(target).encode(), MNT_DETACH)


def private_mounts() -> bool:
    """Whether this process may mount without touching anyone else's view: it runs in a
    user namespace of its own (kbtool's sandbox makes one with a private mount namespace)."""
    try:
        fields = Path("/proc/self/uid_map").read_text().split()
    except OSError:
        return False
    return len(fields) == 3 and fields[2] != "4294967295"


class Workspace:
    """A fresh tree made from the pristine one, with the edit applied."""

    def __init__(self, repo: Repository, scratch: Path, rel: str, text: str) -> None:
        self.repo, self.rel, self.text = repo, rel, text
        self.root = scratch / "ws"
        self.kind = "copy"
        self._layers = scratch / "layers"
        self.root.mkdir()
        if private_mounts():
            try:
                self._overlay()
            except OSError:
                _umount(self.root)
                self._copy()
        else:
            self._copy()

    def _overlay(self) -> None:
        upper, work = self._layers / "upper", self._layers / "work"
        upper.mkdir(parents=True)
        work.mkdir()
        _mount("overlay", self.root, "overlay", 0,
               f"lowerdir={self.repo.src},upperdir={upper},workdir={work},userxattr")
        self.kind = "overlay"
        self._write_edit()
        # The upper layer is where the run's writes are seen: hidden under an empty
        # read-only mount so the run cannot remove what it wrote (its namespace has no
        # right to unmount it).
        _mount("tmpfs", self._layers, "tmpfs", MS_RDONLY, "size=4k")

    def _copy(self) -> None:
        shutil.copytree(self.repo.src, self.root, symlinks=True, dirs_exist_ok=True)
        for base, dirs, _ in os.walk(self.root):
            for name in dirs:
                os.chmod(os.path.join(base, name), 0o755)
        os.chmod(self.root, 0o755)
        self._write_edit()

    def _write_edit(self) -> None:
        target = self.root / self.rel
        target.unlink()  # a new file in place of the read-only one
        target.write_text(self.text)

    def changes(self) -> list[str]:
        """Repository files the run wrote, created or deleted (the edit aside)."""
        if self.kind == "overlay":
            _umount(self._layers)
            return _overlay_changes(self._layers / "upper", self.repo.src, self.rel, self.text)
        return _copy_changes(self.root, self.repo.src, self.rel, self.text)

    def close(self) -> None:
        if self.kind == "overlay":
            _umount(self.root)


def _ignored(rel: str) -> bool:
    return "__pycache__" in rel.split("/") or rel.endswith(".pyc")


def _overlay_changes(upper: Path, lower: Path, edited: str, text: str) -> list[str]:
    found = []
    for base, dirs, files in os.walk(upper):
        for name in [*dirs, *files]:
            path = Path(base) / name
            rel = path.relative_to(upper).as_posix()
            if _ignored(rel):
                continue
            info = path.lstat()
            if stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
                found.append(f"deleted {rel}")
            elif stat.S_ISDIR(info.st_mode):
                if not (lower / rel).is_dir():
                    found.append(f"created {rel}/")
                elif _opaque(path):
                    found.append(f"replaced {rel}/")
            elif rel == edited:
                if path.read_bytes() != text.encode():
                    found.append(f"modified {rel} (the edited file) while running")
            else:
                found.append(f"{'modified' if (lower / rel).exists() else 'created'} {rel}")
    return sorted(found)


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "user.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _copy_changes(root: Path, pristine: Path, edited: str, text: str) -> list[str]:
    def manifest(tree: Path) -> dict[str, tuple[int, int]]:
        found = {}
        for base, _, files in os.walk(tree):
            for name in files:
                path = Path(base) / name
                rel = path.relative_to(tree).as_posix()
                if not _ignored(rel):
                    info = path.lstat()
                    found[rel] = (info.st_size, info.st_mtime_ns)
        return found

    before, after = manifest(pristine), manifest(root)
    found = [f"deleted {rel}" for rel in before if rel not in after]
    found += [f"created {rel}" for rel in after if rel not in before]
    found += [f"modified {rel}" for rel in after
              if rel in before and rel != edited and after[rel] != before[rel]]
    if (root / edited).read_bytes() != text.encode():
        found.append(f"modified {edited} (the edited file) while running")
    return sorted(found)


# -- the judge -----------------------------------------------------------------------------
def test_env(repo: Repository, workspace: Path, scratch: Path) -> dict[str, str]:
    """The test process's whole environment: nothing of kbtool's (no provider keys)."""
    home, tmp = scratch / "home", scratch / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    return {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home), "TMPDIR": str(tmp), "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1",
            "PYTHONPATH": os.pathsep.join(str(p) for p in repo.python_path(workspace))}


def harness_config(repo: Repository, file_path: str, tests: list[str], workspace: Path,
                   judge_dir: Path, labels: list[str] | None = None,
                   coverage: Path | None = None) -> tuple[dict[str, Any], bytes]:
    """The harness's settings for one run, and the key its records are signed with."""
    key = secrets.token_bytes(32)
    config = {"runner": repo.spec.runner, "workspace": str(workspace), "edited": file_path,
              "tests": tests, "labels": labels, "test_root": repo.spec.test_root,
              "python_path": [str(p) for p in repo.python_path(workspace)],
              "results": str(judge_dir / "results.jsonl"),
              "key_file": str(judge_dir / "key"), "nonce": secrets.token_hex(16),
              "coverage": str(coverage) if coverage else None,
              "coverage_source": str(workspace / repo.spec.source_root)}
    return config, key


class Records(BaseModel):
    """The harness's records, verified."""

    started: bool = False
    confinement: str = ""
    results: dict[str, TestOutcome] = Field(default_factory=dict)
    problems: list[str] = Field(default_factory=list)


def read_records(path: Path, key: bytes, nonce: str) -> Records:
    found = Records()
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        return found
    expected = 1
    for raw in lines:
        body, _, mac = raw.decode("utf-8", "replace").rpartition("\t")
        digest = hmac.new(key, f"{nonce}\n{body}".encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(digest, mac):
            found.problems.append("a forged record was written into the judge's channel")
            continue
        record = json.loads(body)
        if record.get("seq") != expected:
            found.problems.append("records of the judge's channel were removed or reordered")
        expected = int(record.get("seq", expected)) + 1
        kind = record.get("kind")
        if kind == "started":
            found.started = True
            found.confinement = str(record.get("confinement", ""))
        elif kind == "tamper":
            changed = ", ".join(record.get("changed", [])[:5])
            found.problems.append(f"tampering {record.get('when')}: {changed}")
        elif kind == "result":
            test, outcome = str(record.get("test")), str(record.get("outcome"))
            previous = found.results.get(test)
            if outcome not in _OUTCOMES:
                outcome = "error"
            if previous is None or previous.outcome == "passed":
                found.results[test] = TestOutcome.model_validate(
                    {"test": test, "outcome": outcome, "detail": str(record.get("detail", ""))})
    return found


def _tail(path: Path, chars: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 4 * chars))
            return handle.read().decode("utf-8", "replace")[-chars:] if chars else ""
    except OSError:
        return ""


def _limit_memory(memory_mb: int) -> Any:
    def apply() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        want = memory_mb * 1024 * 1024
        limit = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


class Engine(Protocol):
    """Where the harness runs: here under kbtool's sandbox (:class:`Local`), or in a
    container (``containers``)."""

    name: str

    def workspace(self, repo: Repository, scratch: Path, rel: str, text: str) -> Workspace:
        """A fresh workspace with the edit applied, as the harness sees it."""
        ...

    def run(self, argv: list[str], env: dict[str, str], workspace: Workspace, judge_dir: Path,
            output: Path, limits: RunLimits) -> bool:
        """Run the harness (its output into ``output``); True when it timed out."""
        ...


class Local:
    """A subprocess of the judge, in the judge's sandbox."""

    name = "local"

    def workspace(self, repo: Repository, scratch: Path, rel: str, text: str) -> Workspace:
        return Workspace(repo, scratch, rel, text)

    def run(self, argv: list[str], env: dict[str, str], workspace: Workspace, judge_dir: Path,
            output: Path, limits: RunLimits) -> bool:
        with output.open("wb") as out:
            proc = subprocess.Popen(argv, env=env, cwd=workspace.root, stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    preexec_fn=_limit_memory(limits.memory_mb))
            try:
                proc.wait(timeout=limits.timeout_s)
                return False
            except subprocess.TimeoutExpired:
                return True
            finally:
                # Its session (and, through the harness's PID namespace, all it started) ends.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


class Execution(BaseModel):
    """One run of the harness, before any verdict."""

    records: Records
    timed_out: bool
    output: str
    writes: list[str]
    workspace: str


def execute(repo: Repository, file_path: str, text: str, tests: list[str], limits: RunLimits,
            scratch: Path, labels: list[str] | None = None, coverage: Path | None = None,
            engine: Engine | None = None) -> Execution:
    """Run the repository's runner on ``text`` as ``file_path`` in a fresh workspace under
    ``scratch``: ``tests`` (or every test that ``labels`` select, with ``coverage``
    recording which lines each test runs, for ``kbtool tasks build``)."""
    engine = engine or Local()
    judge_dir = scratch / "judge"
    judge_dir.mkdir(mode=0o700)
    workspace = engine.workspace(repo, scratch, file_path, text)
    try:
        config, key = harness_config(repo, file_path, tests, workspace.root, judge_dir, labels,
                                     coverage)
        (judge_dir / "key").write_bytes(key)
        (judge_dir / "config.json").write_text(json.dumps(config))
        output = judge_dir / "output.log"
        argv = [sys.executable, "-s", str(HARNESS), str(judge_dir / "config.json")]
        timed_out = engine.run(argv, test_env(repo, workspace.root, scratch), workspace,
                               judge_dir, output, limits)
        records = read_records(Path(config["results"]), key, config["nonce"])
        writes = workspace.changes()
    finally:
        workspace.close()
    # Paths as in the repository: the scratch's name says nothing to a developer or a model.
    shown = _tail(output, limits.output_tail_chars).replace(f"{workspace.root}/", "")
    return Execution(records=records, timed_out=timed_out, writes=writes, output=shown,
                     workspace=workspace.kind)


def verdict(tests: list[str], run: Execution, edited: str | None, wall_s: float) -> RunResult:
    """The result of a run on the selected ``tests`` (see the module docstring)."""
    records = run.records
    outcomes = [records.results.get(t) or TestOutcome(test=t, outcome="not_run") for t in tests]
    result = RunResult(status="failed", total=len(outcomes),
                       passed=sum(o.outcome == "passed" for o in outcomes), outcomes=outcomes,
                       output=run.output, edited_file=edited,
                       problems=[*records.problems,
                                 *(f"wrote the repository: {w}" for w in run.writes)],
                       wall_s=round(wall_s, 3),
                       sandbox=[f"{run.workspace} workspace"] +
                               ([records.confinement] if records.confinement else []))
    if not records.started:
        last = (run.output.strip().splitlines() or ["no output"])[-1]
        result.status = "infrastructure"
        result.infrastructure_error = f"the test harness did not start: {last}"
    elif result.problems:
        result.status = "rejected"
    elif run.timed_out:
        result.status = "timeout"
    elif result.passed == result.total:
        result.status = "passed"
    return result


def judge(repo: Repository, request: RunRequest, limits: RunLimits | None = None,
          scratch: Path | None = None, engine: Engine | None = None) -> RunResult:
    """Check one request in this process's sandbox, or in a container (see the module
    docstring)."""
    limits = limits or RunLimits()
    scratch = Path(scratch or Path.cwd())
    start = time.monotonic()
    text = request.edited_text(repo)
    edited = text if request.replace_content is not None else None
    try:
        ast.parse(text, filename=request.file_path)
    except SyntaxError as exc:
        return RunResult(status="syntax_error", total=len(request.tests), edited_file=edited,
                         output=f"{request.file_path}, line {exc.lineno}: {exc.msg}\n"
                                f"{(exc.text or '').rstrip()}",
                         outcomes=[TestOutcome(test=t, outcome="not_run")
                                   for t in request.tests])
    run = execute(repo, request.file_path, text, request.tests, limits, scratch, engine=engine)
    return verdict(request.tests, run, edited, time.monotonic() - start)


def sandboxed(fn: Callable[[], Any], limits: RunLimits,
              sandbox: Literal["auto", "required", "off"] = "auto",
              max_processes: int = 256) -> Outcome:
    """``fn()`` in a child forked from this process under kbtool's sandbox, its scratch
    the working directory."""
    child = Limits(timeout_s=limits.timeout_s + 60, memory_mb=limits.memory_mb + 1024,
                   output_tail_chars=4000,
                   sandbox=SandboxPolicy(mode=sandbox, max_processes=max_processes))
    return run_isolated(lambda _: fn(), child)


def run_item(repo: Repository, request: RunRequest, limits: RunLimits | None = None,
             sandbox: Literal["auto", "required", "off"] = "auto",
             max_processes: int = 256, engine: Engine | None = None) -> RunResult:
    """:func:`judge` in a child forked from this process under kbtool's sandbox; a child
    that dies or hangs is an ``infrastructure`` result.  ``engine``: where the harness runs
    (default: in that child's sandbox; ``containers.engine("podman")``: in a container)."""
    limits = limits or RunLimits()
    request.source(repo)  # a bad path is the caller's error, raised here
    outcome = sandboxed(lambda: judge(repo, request, limits, engine=engine).model_dump(
        mode="json"), limits, sandbox, max_processes)
    if outcome.value is None:
        why = outcome.error.strip().splitlines()[-1] if outcome.error else \
            f"the judging process {outcome.describe_exit()}"
        return RunResult(status="infrastructure", total=len(request.tests),
                         infrastructure_error=why, output=outcome.output,
                         outcomes=[TestOutcome(test=t, outcome="not_run")
                                   for t in request.tests], sandbox=outcome.sandbox)
    result = RunResult.model_validate(outcome.value)
    result.sandbox = [*outcome.sandbox, *result.sandbox]
    return result
