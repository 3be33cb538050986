"""What many tests share: paths of the test data, settings, running the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from kbtool.config import Config, load_config

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
DOCS = REPO / "docs"
SOLUTIONS = TESTS / "solutions"
HOSTILE = TESTS / "hostile"
REDTEAM = TESTS / "redteam"
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden"
RUN_SMALL = FIXTURES / "run_small"


def make_config(tmp: Path, **overrides: object) -> Config:
    return load_config({"profile": "quick", "cache_dir": str(tmp / "cache"), **overrides})


def run_kbtool(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The installed CLI, in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kbtool", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)
