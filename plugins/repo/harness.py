"""The judge's side inside the test process: runs a repository's own test runner and
reports each selected test's outcome over a signed channel.  Standard library only: it is
run as a script (``python harness.py CONFIG``) by ``kbtool_plugins.repo.runner``, never
imported by kbtool.

Before any repository code (and so any candidate code) runs, it:

- reads the run's signing key from a file and deletes the file: every record it writes is
  HMAC-signed with it, so a line the candidate writes into the channel is not a record;
- confines itself further where Linux lets it: a mount namespace with a private ``/proc``
  (the judge's processes are not visible), a PID namespace whose init is this harness
  (everything the candidate starts dies with it), and only the capabilities that writing
  files takes (no unmounting what hides the workspace's upper layer, no tracing);
- records the identity of the judging machinery (unittest, pytest, pluggy, builtins, the
  import system) and checks it again around every test: a candidate that patches the
  result classes, the assertion helpers, the test functions or the import hooks is reported
  as tampering and the verdict is ``rejected``.

A test passes only when its record says so: printed summaries and exit codes mean nothing
here, a test that never ran (the process exited early) or was skipped did not pass.
"""

from __future__ import annotations

import builtins
import ctypes
import hashlib
import hmac
import json
import os
import sys
import traceback
import types
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWPID = 0x20000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 2, 4, 8, 0x4000, 1 << 18
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 38, 47, 4
CAPABILITY_VERSION_3 = 0x20080522
# chown, dac_override, dac_read_search, fowner, fsetid: what writing files takes.
KEPT_CAPABILITIES = (0, 1, 2, 3, 4)
# Modules whose functions and classes judge a test (checked between tests).
MACHINERY = ("unittest", "_pytest", "pytest", "pluggy")


class Channel:
    """Signed, numbered records, appended one line each (``json<TAB>hmac``)."""

    def __init__(self, path: str, key: bytes, nonce: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._mac = hmac.new(key, digestmod=hashlib.sha256).copy
        self._nonce = nonce
        self._seq = 0

    def send(self, kind: str, **fields: Any) -> None:
        self._seq += 1
        body = json.dumps({"seq": self._seq, "kind": kind, **fields}, sort_keys=True)
        mac = self._mac()
        mac.update(f"{self._nonce}\n{body}".encode())
        os.write(self._fd, f"{body}\t{mac.hexdigest()}\n".encode())


# -- confinement -------------------------------------------------------------------------
def _confine() -> str:
    """Enter a mount and a PID namespace of our own, with a private ``/proc`` (the judge's
    processes are neither visible nor reachable), and keep only the file capabilities: the
    run may write the workspace (where the judge sees what it wrote) but not unmount what
    hides the judge's view of it, nor trace or signal anything outside.  The calling process
    stays outside as a relay that exits the way the tests' process did."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS | CLONE_NEWPID) != 0:
        return f"harness namespaces unavailable ({os.strerror(ctypes.get_errno())})"
    if libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
        raise OSError(ctypes.get_errno(), "private mounts")
    _relay(os.fork())  # the child is PID 1 of the new namespace
    proc = "private /proc"
    if libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) != 0:
        proc = f"host /proc ({os.strerror(ctypes.get_errno())})"
    # PID 1 ignores default-action signals; the tests run in its child, and when that
    # child ends, PID 1 ends and the kernel kills whatever the candidate left running.
    _relay(os.fork())
    _keep_file_capabilities(libc)
    return f"harness namespaces (mount, pid; {proc}; file capabilities only)"


def _keep_file_capabilities(libc: ctypes.CDLL) -> None:
    """Drop every capability but those over files (also for what the tests execute)."""
    keep = sum(1 << cap for cap in KEPT_CAPABILITIES)
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    for cap in range(last + 1):
        if cap not in KEPT_CAPABILITIES:
            libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(keep, keep, 0, 0, 0, 0)  # effective, permitted, inheritable
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _relay(child: int) -> None:
    if child == 0:
        return
    _, status = os.waitpid(child, 0)
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


# -- the judging machinery's identity ----------------------------------------------------
def _code_of(obj: Any) -> types.CodeType | None:
    # Only real functions: other callables (mock's ``call``) make new objects on access.
    if isinstance(obj, (staticmethod, classmethod, types.MethodType)):
        obj = obj.__func__
    return obj.__code__ if isinstance(obj, types.FunctionType) else None


def _unwrap(func: Any) -> Any:
    """The function a decorator (``functools.wraps``) wrapped: the test's own code."""
    if isinstance(func, (staticmethod, classmethod, types.MethodType)):
        func = func.__func__
    for _ in range(100):
        inner = getattr(func, "__wrapped__", None)
        if inner is None:
            break
        func = inner
    return func


def snapshot(prefixes: tuple[str, ...] = MACHINERY) -> dict[str, tuple[int, int]]:
    """Identity of every function and class (and their code) of the judging modules, of
    the builtins and of the import system."""
    seen: dict[str, tuple[int, int]] = {}

    def add(name: str, value: Any) -> None:
        if callable(value) or isinstance(value, (staticmethod, classmethod, property)):
            seen[name] = (id(value), id(_code_of(value)))

    for mod_name, module in list(sys.modules.items()):
        if module is None or mod_name.split(".")[0] not in prefixes:
            continue
        for attr, value in list(vars(module).items()):
            add(f"{mod_name}.{attr}", value)
            if isinstance(value, type) and value.__module__ == mod_name:
                for cattr, cvalue in list(vars(value).items()):
                    add(f"{mod_name}.{attr}.{cattr}", cvalue)
    for attr, value in vars(builtins).items():
        add(f"builtins.{attr}", value)
    for i, finder in enumerate([*sys.meta_path, *sys.path_hooks]):
        seen[f"import hook {i}"] = (id(finder), 0)
    seen["import hooks"] = (len(sys.meta_path), len(sys.path_hooks))
    return seen


def changed(before: dict[str, tuple[int, int]]) -> list[str]:
    now = snapshot()
    return sorted(k for k, v in before.items() if now.get(k) != v)


def same_code(a: types.CodeType, b: types.CodeType) -> bool:
    """Whether two code objects compile the same source (nested code compared alike)."""
    if a.co_code != b.co_code or a.co_names != b.co_names or len(a.co_consts) != len(b.co_consts):
        return False
    for x, y in zip(a.co_consts, b.co_consts, strict=False):
        if isinstance(x, types.CodeType) and isinstance(y, types.CodeType):
            if not same_code(x, y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _find_code(code: types.CodeType, name: str, line: int) -> types.CodeType | None:
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            if const.co_name == name and const.co_firstlineno == line:
                return const
            found = _find_code(const, name, line)
            if found is not None:
                return found
    return None


class Judge:
    """Per-test bookkeeping shared by the runners: records, identity checks."""

    def __init__(self, channel: Channel, config: dict[str, Any]) -> None:
        self.channel = channel
        self.workspace = os.path.realpath(config["workspace"])
        self.edited = os.path.realpath(os.path.join(config["workspace"], config["edited"]))
        # None: every test the labels select (``kbtool tasks build`` surveys a suite).
        self.wanted = None if config.get("labels") else set(config["tests"])
        self.machinery: dict[str, tuple[int, int]] = {}
        self.tests: dict[str, tuple[int, int]] = {}   # test id -> its function, its code
        self.compiled: dict[str, types.CodeType | None] = {}
        self.coverage = None
        if config.get("coverage"):
            import coverage  # kbtool's dependency: only ``kbtool tasks build`` asks for it

            self.coverage = coverage.Coverage(data_file=config["coverage"],
                                              source=[config["coverage_source"]])

    def wants(self, test_id: str) -> bool:
        return self.wanted is None or test_id in self.wanted

    def freeze(self) -> None:
        self.machinery = snapshot()

    def tampering(self, when: str) -> bool:
        problems = changed(self.machinery)
        if problems:
            self.channel.send("tamper", when=when, changed=problems[:20])
        return bool(problems)

    def disk_code(self, filename: str) -> types.CodeType | None:
        """The module code compiled from ``filename`` as it is on disk (no candidate code
        has run in that compiler)."""
        if filename not in self.compiled:
            try:
                with open(filename, "rb") as f:
                    self.compiled[filename] = compile(f.read(), filename, "exec",
                                                      dont_inherit=True)
            except (OSError, SyntaxError, ValueError):
                self.compiled[filename] = None
        return self.compiled[filename]

    def remember(self, test_id: str, func: Any, rewritten: bool = False) -> None:
        """The test's function as collected; checked again when the test starts."""
        func = _unwrap(func)
        code = _code_of(func)
        self.tests[test_id] = (id(func), id(code))
        if code is None:
            return
        filename = os.path.realpath(code.co_filename)
        problem = None
        if filename == self.edited:
            problem = "its function is defined in the edited file"
        elif not filename.startswith(self.workspace + os.sep):
            problem = f"its function comes from outside the repository ({code.co_filename})"
        elif not rewritten:
            module = self.disk_code(filename)
            on_disk = None if module is None else _find_code(module, code.co_name,
                                                             code.co_firstlineno)
            if on_disk is None or not same_code(on_disk, code):
                problem = "its function differs from the test file on disk"
        if problem:
            self.channel.send("tamper", when=f"collecting {test_id}", changed=[problem])

    def started(self, test_id: str, func: Any) -> None:
        if self.coverage is not None:
            self.coverage.switch_context(test_id)
        func = _unwrap(func)
        if test_id in self.tests and self.tests[test_id] != (id(func), id(_code_of(func))):
            self.channel.send("tamper", when=f"starting {test_id}",
                              changed=["the test's function was replaced"])
        self.channel.send("start", test=test_id)

    def finished(self, test_id: str, outcome: str, detail: str = "") -> None:
        self.tampering(f"after {test_id}")
        self.channel.send("result", test=test_id, outcome=outcome, detail=detail[-2000:])


# -- unittest-based runners (Django's tests/runtests.py) ---------------------------------
class _Recording:
    """Stands between one test and its result object: sees every outcome it reports."""

    def __init__(self, result: Any) -> None:
        object.__setattr__(self, "_result", result)
        object.__setattr__(self, "_outcome", None)
        object.__setattr__(self, "_detail", "")
        object.__setattr__(self, "_failed", False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._result, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._result, name, value)

    def _note(self, outcome: str, err: Any = None) -> None:
        if err is not None and not self._detail:
            exc = err[1] if isinstance(err, tuple) and len(err) > 1 else err
            object.__setattr__(self, "_detail", f"{type(exc).__name__}: {exc}")
        if outcome != "passed":
            object.__setattr__(self, "_failed", True)
        if self._outcome is None or outcome != "passed":
            object.__setattr__(self, "_outcome", outcome)

    def addSuccess(self, test: Any) -> None:
        self._note("passed")
        self._result.addSuccess(test)

    def addFailure(self, test: Any, err: Any) -> None:
        self._note("failed", err)
        self._result.addFailure(test, err)

    def addError(self, test: Any, err: Any) -> None:
        self._note("error", err)
        self._result.addError(test, err)

    def addSkip(self, test: Any, reason: str) -> None:
        self._note("skipped")
        object.__setattr__(self, "_detail", f"skipped: {reason}")
        self._result.addSkip(test, reason)

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        self._note("failed", err)  # a test marked as failing is no evidence of a working method
        self._result.addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test: Any) -> None:
        self._note("failed")
        object.__setattr__(self, "_detail", "unexpected success")
        self._result.addUnexpectedSuccess(test)

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        if err is not None:
            failure = issubclass(err[0], test.failureException)
            self._note("failed" if failure else "error", err)
        self._result.addSubTest(test, subtest, err)

    def verdict(self) -> tuple[str, str]:
        if self._outcome is None:
            return "not_run", "the test reported no outcome"
        return self._outcome, self._detail


def _unittest_ids(suite: Any) -> list[Any]:
    found, stack = [], [suite]
    while stack:
        item = stack.pop()
        if hasattr(item, "_tests"):
            stack.extend(item._tests)
        elif hasattr(item, "_testMethodName"):
            found.append(item)
    return found


def install_unittest(judge: Judge) -> None:
    import unittest
    import unittest.async_case
    import unittest.mock
    from unittest import case, suite

    original_run = case.TestCase.run
    original_suite_run = suite.TestSuite.run
    state = {"frozen": False}

    def test_function(test: Any) -> Any:
        return getattr(type(test), getattr(test, "_testMethodName", ""), None)

    def suite_run(self: Any, result: Any, debug: bool = False) -> Any:
        if not state["frozen"]:  # the outermost suite: every test is loaded, none has run
            state["frozen"] = True
            for test in _unittest_ids(self):
                if judge.wants(test.id()):
                    judge.remember(test.id(), test_function(test))
            judge.tampering("before the first test")
        return original_suite_run(self, result, debug)

    def run(self: Any, result: Any = None) -> Any:
        test_id = self.id()
        if result is None or not judge.wants(test_id):
            return original_run(self, result)
        judge.started(test_id, test_function(self))
        recording = _Recording(result)
        try:
            return original_run(self, recording)  # type: ignore[arg-type]
        finally:
            judge.finished(test_id, *recording.verdict())

    run.__wrapped__ = original_run  # type: ignore[attr-defined]
    case.TestCase.run = run  # type: ignore[method-assign]
    suite.TestSuite.run = suite_run  # type: ignore[method-assign]
    assert unittest.TestCase.run is run


def run_django(judge: Judge, config: dict[str, Any]) -> None:
    import runpy

    tests_dir = os.path.join(config["workspace"], config["test_root"])
    install_unittest(judge)
    judge.freeze()
    sys.argv = [os.path.join(tests_dir, "runtests.py"), "--verbosity", "0", "--noinput",
                "--parallel", "1", *(config.get("labels") or config["tests"])]
    sys.path.insert(0, tests_dir)
    os.chdir(tests_dir)
    runpy.run_path(sys.argv[0], run_name="__main__")


# -- pytest --------------------------------------------------------------------------------
def run_pytest(judge: Judge, config: dict[str, Any]) -> None:
    import importlib
    import pkgutil

    import _pytest
    import pytest

    # Every part of pytest loaded now, so the snapshot covers what judges the tests.
    for info in pkgutil.walk_packages(_pytest.__path__, "_pytest."):
        try:
            importlib.import_module(info.name)
        except Exception:  # an optional part whose dependency is missing
            continue

    class Recorder:
        def __init__(self) -> None:
            self.reports: dict[str, list[Any]] = {}

        def pytest_load_initial_conftests(self) -> None:
            # After pytest's own set-up (its import hook, its legacy-path patches), before
            # the first conftest imports repository code.
            judge.freeze()

        @pytest.hookimpl(trylast=True)
        def pytest_collection_finish(self, session: Any) -> None:
            for item in session.items:
                if judge.wants(item.nodeid):
                    module = getattr(item, "module", None)
                    rewritten = "@py_builtins" in vars(module) if module else False
                    judge.remember(item.nodeid, getattr(item, "function", None), rewritten)
            judge.tampering("before the first test")

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_protocol(self, item: Any, nextitem: Any) -> Any:
            wanted = judge.wants(item.nodeid)
            if wanted:
                judge.started(item.nodeid, getattr(item, "function", None))
            yield
            if wanted:
                judge.finished(item.nodeid, *self.verdict(item.nodeid))

        def pytest_runtest_logreport(self, report: Any) -> None:
            self.reports.setdefault(report.nodeid, []).append(report)

        def verdict(self, nodeid: str) -> tuple[str, str]:
            reports = self.reports.get(nodeid, [])
            whens = {r.when: r for r in reports}
            for report in reports:
                if hasattr(report, "wasxfail"):
                    return "failed", "expected failure"
                if report.skipped:
                    return "skipped", str(report.longrepr)[-300:]
                if report.failed:
                    outcome = "failed" if report.when == "call" else "error"
                    crash = getattr(report.longrepr, "reprcrash", None)
                    message = getattr(crash, "message", None)
                    return outcome, message or str(report.longrepr)[-1500:]
            if not {"setup", "call", "teardown"} <= set(whens):
                return "not_run", "the test reported no outcome"
            return "passed", ""

    os.chdir(config["workspace"])
    args = ["-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--rootdir",
            config["workspace"], *(config.get("labels") or config["tests"])]
    pytest.main(args, plugins=[Recorder()])


RUNNERS = {"django": run_django, "pytest": run_pytest}


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    with open(config["key_file"], "rb") as f:
        key = f.read()
    os.unlink(config["key_file"])
    channel = Channel(config["results"], key, config["nonce"])
    del key
    confinement = "not confined"
    if config.get("confine", True):
        try:
            confinement = _confine()
        except OSError as exc:  # before any repository code: the judge calls it infrastructure
            raise SystemExit(f"kbtool harness: cannot confine the tests: {exc}") from None
    sys.dont_write_bytecode = True
    sys.path[:0] = config["python_path"]
    judge = Judge(channel, config)
    channel.send("started", confinement=confinement)
    if judge.coverage is not None:
        judge.coverage.start()
    try:
        RUNNERS[config["runner"]](judge, config)
    except SystemExit:
        pass
    except BaseException:
        traceback.print_exc()
    finally:
        if judge.coverage is not None:
            judge.coverage.stop()
            judge.coverage.save()
    channel.send("done")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # atexit handlers are the repository's business, not the verdict's


if __name__ == "__main__":
    main()
