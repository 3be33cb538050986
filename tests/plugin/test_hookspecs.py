"""Every hook spec in ``kbtool.plugin.hookspecs`` has a test here, and a section in docs/plugins.md.

Each test registers a throwaway plugin object on ``kbtool.plugin.manager.pm`` and checks the
hook's effect through kbtool's own API (``plugins.collect``, ``catalog``, ``pick_timer``,
the Typer app).  A new hook spec without a test here, or without a documented section,
fails ``test_every_hookspec_has_a_test`` / ``test_every_hookspec_is_documented``.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import kbtool.plugin.hookspecs
from kbtool.cli import app as cli
from kbtool.config import Config
from kbtool.errors import KbtoolError
from kbtool.plugin import manager as plugins
from kbtool.plugin import registry
from kbtool.plugin.hookspecs import hookimpl
from kbtool.runs.provenance import task_hash
from kbtool.task import catalog
from kbtool.task.model import Task
from kbtool.timing.base import Timer, TimingSettings
from kbtool.tracking import EvalRow, TrackedRun, Tracker
from tests.helpers import DOCS as DOCS_DIR

DOCS = DOCS_DIR / "plugins.md"


def hookspec_names() -> set[str]:
    """Functions of kbtool.plugin.hookspecs marked with ``@hookspec`` (pluggy sets ``kbtool_spec``)."""
    marker = f"{plugins.ENTRY_POINT_GROUP}_spec"
    return {name for name, obj in inspect.getmembers(kbtool.plugin.hookspecs)
            if inspect.isfunction(obj) and hasattr(obj, marker)}


@pytest.fixture
def add_plugin() -> Iterator[Callable[[object], None]]:
    """Register plugin objects for one test; unregister them afterwards."""
    plugins.load_plugins()  # built-ins first, as in the CLI: a test plugin then runs first
    added: list[object] = []

    def add(plugin: object) -> None:
        plugins.pm.register(plugin, name=f"test-{type(plugin).__name__}-{id(plugin)}")
        added.append(plugin)

    yield add
    for plugin in added:
        plugins.pm.unregister(plugin)


def _check_register_hook(add_plugin: Callable[[object], None], hook: str, name: str,
                         thing: Any) -> dict[str, Any]:
    """Register ``thing`` as ``name`` through ``hook`` and return what ``collect`` finds."""

    class Probe:
        pass

    def impl(self: Any, register: Callable[[str, Any], None]) -> None:
        register(name, thing)

    setattr(Probe, hook, hookimpl(impl))  # pluggy matches the hookimpl by attribute name
    assert name not in plugins.collect(hook)
    add_plugin(Probe())
    found = plugins.collect(hook)
    assert found[name] is thing
    return found


# --- one test per hook spec ------------------------------------------------------------


class ProbeSource:
    description = "a test source"

    def __init__(self, path: Path) -> None:
        self.path = path

    def tasks(self, config: Config) -> list[Task]:
        return [Task(id="probe/1/1_Probe", source="probe", name="1_Probe", path=self.path,
                     level=1, number=1)]


def test_register_task_sources(add_plugin: Callable[[object], None], tmp_path: Path) -> None:
    source = ProbeSource(tmp_path / "1_Probe.py")
    found = _check_register_hook(add_plugin, "register_task_sources", "probe", source)
    assert "builtin" in found  # the built-ins are still there
    config = Config()
    assert [t.id for t in catalog.select(config, "probe")] == ["probe/1/1_Probe"]
    assert catalog.resolve("probe/1/1", config).path == source.path


class ProbeKind:
    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        return {}

    def baseline(self, *args: Any) -> dict[str, Any]:
        return {}

    def check(self, *args: Any) -> dict[str, Any]:
        return {}


def test_register_task_kinds(add_plugin: Callable[[object], None]) -> None:
    found = _check_register_hook(add_plugin, "register_task_kinds", "probe-kind", ProbeKind())
    assert "kernelbench" in found


class ProbeTimer(Timer):
    name = "probe-timer"
    devices = ("cpu",)
    description = "a test timer"

    def trial(self, fn: Callable[[], Any]) -> float:
        fn()
        return 1.0


def test_register_timers(add_plugin: Callable[[object], None]) -> None:
    from kbtool.evaluation.evaluator import pick_timer

    timer = ProbeTimer()
    found = _check_register_hook(add_plugin, "register_timers", "probe-timer", timer)
    assert "cpu" in found
    assert pick_timer("probe-timer", "cpu") is timer
    assert timer.measure(lambda: None, TimingSettings(min_trials=2)).median_ms == 1.0


def test_default_timer(add_plugin: Callable[[object], None]) -> None:
    from kbtool.evaluation.evaluator import pick_timer

    timer = ProbeTimer()

    class Probe:
        @hookimpl
        def register_timers(self, register: Callable[[str, Any], None]) -> None:
            register(timer.name, timer)

        @hookimpl
        def default_timer(self, device: str) -> str | None:
            return timer.name if device == "cpu" else None

    assert plugins.pm.hook.default_timer(device="cpu") == "cpu"  # the built-in answer
    add_plugin(Probe())
    assert plugins.pm.hook.default_timer(device="cpu") == "probe-timer"  # firstresult: ours
    assert plugins.pm.hook.default_timer(device="cuda") == "cuda-events"  # None falls through
    assert pick_timer(None, "cpu") is timer


def test_register_providers(add_plugin: Callable[[object], None]) -> None:
    def provider_factory(**options: Any) -> object:
        return object()

    _check_register_hook(add_plugin, "register_providers", "probe-llm", provider_factory)


def test_register_container_engines(add_plugin: Callable[[object], None]) -> None:
    class ProbeEngine:
        pass

    _check_register_hook(add_plugin, "register_container_engines", "probe-engine", ProbeEngine)


def test_register_schedulers(add_plugin: Callable[[object], None]) -> None:
    class ProbeScheduler:
        pass

    _check_register_hook(add_plugin, "register_schedulers", "probe-scheduler", ProbeScheduler)


def test_register_site_profiles(add_plugin: Callable[[object], None]) -> None:
    profile = {"scheduler": "slurm", "partition": "gpu"}
    _check_register_hook(add_plugin, "register_site_profiles", "probe-site", profile)


def test_register_search_strategies(add_plugin: Callable[[object], None]) -> None:
    def strategy_factory(**options: Any) -> object:
        return object()

    _check_register_hook(add_plugin, "register_search_strategies", "probe-search", strategy_factory)


def test_register_commands(add_plugin: Callable[[object], None]) -> None:
    class Probe:
        @hookimpl
        def register_commands(self, cli: typer.Typer) -> None:
            @cli.command("probe-hello")
            def hello(name: str = "world") -> None:
                """Say hello (a command added by a test plugin)."""
                print(f"hello {name} from a plugin")

    add_plugin(Probe())
    before = list(cli.app.registered_commands)
    try:
        plugins.pm.hook.register_commands(cli=cli.app)  # what kbtool.cli.app.main does at start
        result = CliRunner().invoke(cli.app, ["probe-hello", "--name", "kbtool"])
        assert result.exit_code == 0, result.output
        assert "hello kbtool from a plugin" in result.output
        help_result = CliRunner().invoke(cli.app, ["--help"])
        assert "probe-hello" in help_result.output
    finally:
        cli.app.registered_commands[:] = before


def test_register_eval_backends(add_plugin: Callable[[object], None]) -> None:
    """A backend registered by a plugin is what ``eval_backend=NAME`` gets everywhere."""
    from kbtool.evaluation.backend import make_backend

    made: list[Config] = []

    class ProbeBackend:
        def __init__(self, config: Config) -> None:
            self.env = {"device": "probe"}
            made.append(config)

        def close(self) -> None:
            pass

    found = _check_register_hook(add_plugin, "register_eval_backends", "probe", ProbeBackend)
    assert {"local", "queue"} <= set(found)
    backend = make_backend(Config(eval_backend="probe"))
    assert isinstance(backend, ProbeBackend) and len(made) == 1
    with pytest.raises(KbtoolError, match="unknown evaluation backend 'prob'"):
        make_backend(Config(eval_backend="prob"))


class ProbeTracker(Tracker):
    """Records what it is told; ``fail`` names a method that raises."""

    name = "probe"

    def __init__(self, fail: str = "") -> None:
        self.fail = fail
        self.calls: list[tuple[str, Any]] = []

    def _record(self, method: str, value: Any) -> None:
        if method == self.fail:
            raise RuntimeError(f"{method} broke")
        self.calls.append((method, value))

    def start(self, run: TrackedRun) -> None:
        self._record("start", run)

    def log_eval(self, row: EvalRow) -> None:
        self._record("log_eval", row)

    def log_summary(self, metrics: dict[str, float]) -> None:
        self._record("log_summary", metrics)

    def log_artifacts(self, files: list[Path]) -> None:
        self._record("log_artifacts", [f.name for f in files])

    def finish(self, status: str) -> None:
        self._record("finish", status)


def test_register_trackers(add_plugin: Callable[[object], None], tmp_path: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    from kbtool.runs.events import Eval
    from kbtool.runs.store import RunStore
    from kbtool.tracking.session import RunTrackers

    made: list[ProbeTracker] = []

    def factory(fail: str = "") -> ProbeTracker:
        made.append(ProbeTracker(fail))
        return made[-1]

    found = _check_register_hook(add_plugin, "register_trackers", "probe", factory)
    _check_register_hook(add_plugin, "register_trackers", "faulty",
                         lambda: factory(fail="log_eval"))
    assert {"wandb", "mlflow"} <= set(found)
    task = catalog.resolve("builtin/1/2", Config())
    store = RunStore(tmp_path / "run")
    config = Config(tracker=["faulty", "probe"], tracker_project="proj")
    trackers = RunTrackers(config, store, [task])
    trackers.start(resumed=False)
    store.subscribe(trackers.event)
    candidate = store.write(store.layout.candidate(store.layout.step_dir(task.id, 0, 0, 0)),
                            "ModelNew = None\n")
    for _ in range(2):
        store.emit(Eval(sample=f"{task.id}/p0/a0/s0", task=task.id, status="ok", runtime_ms=2.0,
                        speedup=1.5, speedup_ci=[1.2, 1.8], path=store.layout.relative(candidate),
                        env={"hostname": "node7", "torch_version": "9.9"}))
        store.emit(Eval(sample=f"{task.id}/p0/a1/s0", task=task.id, status="incorrect",
                        path=store.layout.relative(candidate)))
    trackers.finish("finished")
    store.close()
    faulty, probe = made[-2], made[-1]
    assert [m for m, _ in faulty.calls] == ["start"]  # left out after its failure, once
    assert caplog.text.count("tracker faulty failed in log_eval (RuntimeError: log_eval broke)") == 1
    methods = [m for m, _ in probe.calls]
    assert methods[0] == "start" and methods[-1] == "finish" and methods.count("log_eval") == 2
    run = probe.calls[0][1]
    assert run.project == "proj" and run.settings["tracker"] == ["faulty", "probe"]
    row = probe.calls[1][1]
    assert (row.step, row.task, row.status, row.speedup_low, row.machine) == \
        (1, task.id, "ok", 1.2, "node7")
    assert row.candidate_hash == hashlib.sha256(b"ModelNew = None\n").hexdigest()
    assert row.task_hash == task_hash(task) and row.numbers()["speedup"] == 1.5
    assert probe.calls[2][1].step == 2 and not probe.calls[2][1].correct
    with pytest.raises(KbtoolError, match=r"unknown tracker 'prob' \(did you mean 'probe'"):
        RunTrackers.check(Config(tracker=["prob"]))


HOOK_TESTS: dict[str, Callable[..., None]] = {
    "register_task_sources": test_register_task_sources,
    "register_task_kinds": test_register_task_kinds,
    "register_timers": test_register_timers,
    "default_timer": test_default_timer,
    "register_providers": test_register_providers,
    "register_container_engines": test_register_container_engines,
    "register_schedulers": test_register_schedulers,
    "register_site_profiles": test_register_site_profiles,
    "register_search_strategies": test_register_search_strategies,
    "register_commands": test_register_commands,
    "register_eval_backends": test_register_eval_backends,
    "register_trackers": test_register_trackers,
}


# --- rules shared by the register_* hooks ------------------------------------------------


def test_name_registered_twice_keeps_the_first(add_plugin: Callable[[object], None],
                                               caplog: pytest.LogCaptureFixture) -> None:
    """The last-registered plugin is called first, so it replaces a built-in, with a warning."""
    timer = ProbeTimer()

    class Probe:
        @hookimpl
        def register_timers(self, register: Callable[[str, Any], None]) -> None:
            register("cpu", timer)

    add_plugin(Probe())
    assert plugins.collect("register_timers")["cpu"] is timer
    assert "'cpu' from plugin 'timers' is registered already" in caplog.text


def test_a_hook_that_raises_is_reported_and_skipped(add_plugin: Callable[[object], None],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    class Faulty:
        @hookimpl
        def register_timers(self, register: Callable[[str, Any], None]) -> None:
            raise ValueError("faulty plugin")

    add_plugin(Faulty())
    timers = registry.TIMERS.all()
    assert "cpu" in timers  # the built-ins still register
    assert "failed in register_timers (ValueError: faulty plugin)" in caplog.text


def test_register_commands_that_raises_is_reported(add_plugin: Callable[[object], None],
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """register_commands is guarded like every other hook: the others still add theirs."""
    class Faulty:
        @hookimpl
        def register_commands(self, cli: typer.Typer) -> None:
            raise RuntimeError("no commands today")

    add_plugin(Faulty())
    before = list(cli.app.registered_commands)
    try:
        plugins.call_each("register_commands", cli=cli.app)
    finally:
        cli.app.registered_commands[:] = before
    assert "failed in register_commands (RuntimeError: no commands today)" in caplog.text


def test_a_misspelled_hook_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """A @hookimpl whose name is no hook would never be called: say so, with the hook meant."""

    class Typo:
        @hookimpl
        def register_timer(self, register: Callable[[str, Any], None]) -> None:
            register("never", ProbeTimer())

    plugins.load_plugins()
    typo = Typo()
    plugins._register(typo, "typo-plugin", "1.0", builtin=False)
    try:
        assert "plugin 'typo-plugin' implements 'register_timer', which is not a kbtool hook " \
               "(did you mean 'register_timers'?)" in caplog.text
        assert "never" not in registry.TIMERS.all()
    finally:
        plugins.pm.unregister(typo)
        plugins._infos.pop("typo-plugin", None)


def test_registry_names_the_unknown_and_the_close(add_plugin: Callable[[object], None]) -> None:
    with pytest.raises(KbtoolError, match=r"unknown timer 'cpux' \(did you mean 'cpu'\?\)"):
        registry.TIMERS.get("cpux")
    with pytest.raises(KbtoolError, match=r"unknown task kind 'zzz' \(known: .*kernelbench"):
        registry.TASK_KINDS.get("zzz")


# --- meta-tests ---------------------------------------------------------------------------


def test_hookspecs_are_found() -> None:
    names = hookspec_names()
    assert {"register_timers", "default_timer", "register_commands"} <= names
    assert all(hasattr(plugins.pm.hook, name) for name in names)


def test_every_hookspec_has_a_test() -> None:
    names = hookspec_names()
    missing = sorted(names - set(HOOK_TESTS))
    assert not missing, f"hook specs without a test in {Path(__file__).name}: {missing}"
    stale = sorted(set(HOOK_TESTS) - names)
    assert not stale, f"tests for hook specs that no longer exist: {stale}"
    for name, test in HOOK_TESTS.items():
        assert globals().get(test.__name__) is test, f"{name}: {test.__name__} is not collected"


def test_every_hookspec_is_documented() -> None:
    text = DOCS.read_text()
    headings = [line for line in text.splitlines() if re.match(r"#{1,6}\s", line)]
    missing = [name for name in sorted(hookspec_names())
               if not any(re.search(rf"`{name}\b[^`]*`", line) for line in headings)]
    assert not missing, f"docs/plugins.md has no section heading for: {missing}"
