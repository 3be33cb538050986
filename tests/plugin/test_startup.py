"""What kbtool imports to start: the quick commands load every plugin (built-in ones like
third-party ones) and register every command, but import none of the heavy modules that
only some commands need (their times: bench/startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# What only evaluating, searching, reporting, the monitor or the sandbox service need.
HEAVY = ("torch", "numpy", "scipy", "textual", "matplotlib", "fastapi", "uvicorn", "httpx",
         "openai", "litellm", "podman", "spython", "kbtool.evaluation.evaluator",
         "kbtool.search.engine", "kbtool.report.build", "kbtool.monitor.app")
# The settings' models: only commands that read settings import them.
SETTINGS = ("kbtool.config", "yaml")
# Reads the settings (pydantic, which Typer uses too) and lists tasks through the task
# kinds, but evaluates nothing: what a kind's check runs is imported where it runs.
LISTING = (*(m for m in HEAVY if not m.startswith("kbtool.")),
           "kbtool.evaluation", "kbtool.sandbox.isolation", "filelock",
           "kbtool_plugins.repo.runner", "kbtool_plugins.perf.check",
           "kbtool_plugins.kernelbench.judge")

MAIN = """
import json, sys
from kbtool.cli.main import main
out, sys.argv = sys.argv[1], ["kbtool", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
with open(out, "w") as handle:
    json.dump({"code": code, "modules": sorted(sys.modules)}, handle)
"""


def imported(tmp_path: Path, *args: str) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The modules loaded by the time ``kbtool ARGS`` is done, and its process."""
    out = tmp_path / "modules.json"
    proc = subprocess.run([sys.executable, "-c", MAIN, str(out), *args], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    data = json.loads(out.read_text())
    assert data["code"] in (0, None), proc.stderr
    return set(data["modules"]), proc


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize("args", [("--help",), ("version",), ("plugins",), ("tasks", "--help"),
                                  ("eval", "--help"), ("run", "--help")])
def test_quick_commands_import_nothing_heavy(tmp_path: Path, args: tuple[str, ...]) -> None:
    modules, proc = imported(tmp_path, *args)
    assert proc.stdout
    # Every plugin is loaded (the built-in ones as modules of kbtool_plugins).
    assert {"kbtool_plugins.kernelbench", "kbtool_plugins.repo", "kbtool_plugins.perf",
            "kbtool_plugins.strategies", "kbtool_plugins.timers"} <= modules
    assert loaded(modules, HEAVY + SETTINGS) == []


def test_listing_tasks_imports_nothing_that_evaluates(tmp_path: Path) -> None:
    modules, proc = imported(tmp_path, "tasks", "list")
    assert "builtin/1/2_ReLU" in proc.stdout.split()
    assert loaded(modules, LISTING) == []
    assert loaded(modules, ("kbtool.search.engine",)) == []

