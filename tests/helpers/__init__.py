"""What many tests share: paths of the test data, settings, running the CLI as a user does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from kbtool.config import Config, load_config
from kbtool.evaluation.result import EvalResult, Status

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
DOCS = REPO / "docs"
SOLUTIONS = TESTS / "solutions"
HOSTILE = TESTS / "hostile"
REDTEAM = TESTS / "redteam"
FIXTURES = TESTS / "fixtures"
GOLDEN = TESTS / "golden"
RUN_SMALL = FIXTURES / "run_small"
RUN_PERF = FIXTURES / "run_perf"  # kbtool run perf/packaging-canonicalize, replay/builtin


def make_config(tmp: Path, **overrides: object) -> Config:
    return load_config({"profile": "quick", "cache_dir": str(tmp / "cache"), **overrides})


def run_kbtool(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The installed CLI, in a subprocess, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "kbtool", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout)


def install_distribution(source: Path, target: Path, scratch: Path) -> Path:
    """``pip install --target`` a distribution of tests/fixtures (built from a copy, so no
    build/ or *.egg-info lands in the repository); returns ``target``."""
    copy = scratch / source.name
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info",
                                                                "__pycache__"))
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
         "--no-input", "--disable-pip-version-check", "--target", str(target), str(copy)],
        capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install of {source.name} failed:\n{proc.stdout}\n{proc.stderr}")
    return target


def run_with_site(site: Path, cache: Path, *args: str, cwd: Path | None = None,
                  **env_vars: str) -> subprocess.CompletedProcess[str]:
    """The CLI with ``site`` (installed plugins) first on the import path, as an installed
    package's plugins would be found, and a cache of its own."""
    env = dict(os.environ)
    for name in ("KBTOOL_LOAD_PLUGINS", "KBTOOL_BLOCK_PLUGINS"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), env.get("PYTHONPATH")) if p)
    env["XDG_CACHE_HOME"] = str(cache)
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "kbtool", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


# Red-team candidates that act only on calls coming back to back (under 2 ms apart), as in
# a timing loop.  On a busy machine the judge's windows may hold a single call (making a
# fresh input set takes longer than the window's 10 ms): such a candidate then computed
# every timed call honestly, and `ok` with no gain is the right verdict.
BACK_TO_BACK = {"back_to_back", "wrong_now_and_then", "inplace_when_timed"}


def never_acted(name: str, result: EvalResult) -> bool:
    """Whether ``result`` is a back-to-back candidate's honest `ok` from one-call windows
    (no speedup shown: the timed calls computed what the reference's did)."""
    return (Path(name).stem in BACK_TO_BACK and result.status == Status.ok
            and (result.noise or {}).get("calls_per_window") == 1
            and result.significant is not True)
