from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbtool.config.settings import load_config
from kbtool.evaluation.evaluator import Evaluator

TESTS = Path(__file__).parent
SOLUTIONS = TESTS / "solutions"
HOSTILE = TESTS / "hostile"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's config or cache."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    monkeypatch.delenv("KBTOOL_CONFIG", raising=False)


def make_config(tmp: Path, **overrides: object):
    return load_config({"profile": "quick", "cache_dir": str(tmp / "cache"), **overrides})


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluator]:
    with Evaluator(make_config(tmp_path_factory.mktemp("eval"), device="cpu")) as ev:
        yield ev


def run_kbtool(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed CLI, in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kbtool", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)
