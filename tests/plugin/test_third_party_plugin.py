"""A real third-party plugin: build and install ``kbtool-demo-plugin`` with pip, then run kbtool.

The distribution (tests/fixtures/kbtool-demo-plugin) declares two entry points in the
``kbtool`` group: ``demo`` (a task source and a timer) and ``broken`` (a module that fails
to import).  kbtool runs in subprocesses with the install folder on PYTHONPATH, so the
plugins are found exactly as an installed package's would be.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import FIXTURES, install_distribution, run_with_site

FIXTURE = FIXTURES / "kbtool-demo-plugin"

SOLUTION = """\
import torch
import torch.nn as nn


class ModelNew(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed kbtool-demo-plugin (its modules and dist-info)."""
    target = install_distribution(FIXTURE, tmp_path_factory.mktemp("demo-site"),
                                  tmp_path_factory.mktemp("demo-src"))
    assert any(target.glob("kbtool_demo_plugin-0.3.1.dist-info")), sorted(os.listdir(target))
    return target


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xdg-cache")


run_kbtool = run_with_site


def plugins_json(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert proc.returncode == 0, proc.stderr
    return {info["name"]: info for info in json.loads(proc.stdout)}


BUILTINS = {"kernelbench", "perf", "backends", "timers", "strategies", "provider_replay",
            "provider_openai", "provider_litellm", "engines", "slurm", "repo_service", "repo",
            "hf", "trackers"}


def test_plugins_lists_demo_and_warns_about_broken(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "plugins", "--json")
    infos = plugins_json(proc)
    assert set(infos) >= BUILTINS
    assert all(infos[name]["builtin"] for name in BUILTINS)
    demo = infos["demo"]
    assert demo["version"] == "0.3.1"
    assert demo["builtin"] is False
    assert {"register_task_sources", "register_timers"} <= set(demo["hooks"])
    assert "broken" not in infos
    warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert any("'broken'" in line and "ImportError" in line for line in warnings), proc.stderr


def test_plugins_table_names_demo(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "plugins")
    assert proc.returncode == 0, proc.stderr
    assert any(line.startswith("demo 0.3.1 (third-party)") for line in proc.stdout.splitlines())


def test_tasks_list_demo(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "tasks", "list", "demo")
    assert proc.returncode == 0, proc.stderr
    assert "demo/1/1_Scale" in proc.stdout.split()


def test_eval_with_demo_source_and_timer(plugin_site: Path, cache_home: Path,
                                         tmp_path: Path) -> None:
    solution = tmp_path / "scale_solution.py"
    solution.write_text(SOLUTION)
    proc = run_kbtool(plugin_site, cache_home, "eval", "demo/1/1_Scale", "--solution", str(solution),
                      "--timer", "demo-timer", "--device", "cpu", "--config-profile", "quick",
                      "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok", result
    assert result["task"] == "demo/1/1_Scale"
    assert result["timer"] == "demo-timer"
    assert result["correct"] is True
    assert result["timing"]["timer"] == "demo-timer"
    assert result["baseline"]["timer"] == "demo-timer"
    assert result["runtime_ms"] > 0


def test_load_plugins_empty_loads_no_third_party(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "plugins", "--json", KBTOOL_LOAD_PLUGINS="")
    infos = plugins_json(proc)
    assert set(infos) == BUILTINS
    assert "broken" not in proc.stderr
    assert "kbtool: warning" not in proc.stderr


def test_load_plugins_demo_only(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "plugins", "--json", KBTOOL_LOAD_PLUGINS="demo")
    infos = plugins_json(proc)
    assert set(infos) == BUILTINS | {"demo"}
    assert "broken" not in proc.stderr
    assert "kbtool: warning" not in proc.stderr


def test_block_plugins(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "plugins", "--json",
                      KBTOOL_BLOCK_PLUGINS="demo,broken,legacy")
    infos = plugins_json(proc)
    assert set(infos) == BUILTINS
    assert "kbtool: warning" not in proc.stderr


def test_block_wins_over_load(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "plugins", "--json",
                      KBTOOL_LOAD_PLUGINS="demo,broken", KBTOOL_BLOCK_PLUGINS="broken,legacy")
    infos = plugins_json(proc)
    assert set(infos) == BUILTINS | {"demo"}
    assert "kbtool: warning" not in proc.stderr


def test_blocked_plugin_source_is_unknown(plugin_site: Path, cache_home: Path) -> None:
    proc = run_kbtool(plugin_site, cache_home, "tasks", "list", "demo", KBTOOL_BLOCK_PLUGINS="demo")
    assert proc.returncode != 0
    assert "unknown task source 'demo'" in proc.stderr


def test_a_plugin_on_kbtool_0_1_names_still_evaluates(plugin_site: Path, cache_home: Path,
                                                      tmp_path: Path) -> None:
    """Old module names, a kind without the base class, Task(meta=...): it all runs, through
    the evaluation process too, and each old name is named once on stderr."""
    solution = tmp_path / "anything.py"
    solution.write_text("x = 1\n")
    proc = run_kbtool(plugin_site, cache_home, "eval", "old/1/1_Old", "--solution",
                      str(solution), "--device", "cpu", "--config-profile", "quick", "--json",
                      KBTOOL_LOAD_PLUGINS="legacy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and result["mode"] == "eager" and result["speedup"] > 0
    assert "kbtool.hookspecs is deprecated; import kbtool.plugin.hookspecs" in proc.stderr
    assert "task kind 'old' does not subclass kbtool.task.kind.TaskKind" in proc.stderr
    assert "Traceback" not in proc.stderr
