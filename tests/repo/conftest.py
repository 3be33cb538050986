"""Repositories fetched once per test session (from PyPI: CI has it; elsewhere they skip)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kbtool.errors import RunError
from kbtool_plugins.repo import repository
from kbtool_plugins.repo.dataset import builtin_root, load
from kbtool_plugins.repo.repository import Repository


@pytest.fixture(scope="session")
def repo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the repositories are cached: ``$KBTOOL_TEST_REPO_CACHE`` (to keep them between
    sessions), else the session's temporary folder."""
    configured = os.environ.get("KBTOOL_TEST_REPO_CACHE")
    return Path(configured) if configured else tmp_path_factory.getbasetemp() / "repo-cache"


def _fetch(name: str, cache: Path) -> Repository:
    spec = load(builtin_root() / name).spec
    try:
        return repository.fetch(spec, cache)
    except RunError as exc:
        pytest.skip(f"{spec.requirement} could not be fetched from PyPI: {exc}")


@pytest.fixture(scope="session")
def django(repo_cache: Path) -> Repository:
    return _fetch("django", repo_cache)


@pytest.fixture(scope="session")
def packaging(repo_cache: Path) -> Repository:
    return _fetch("packaging", repo_cache)


@pytest.fixture(scope="session")
def sympy(repo_cache: Path) -> Repository:
    return _fetch("sympy", repo_cache)


@pytest.fixture
def in_tmp(tmp_path: Path) -> Iterator[Path]:
    """The working directory is a fresh temporary folder (``judge`` makes its scratch there)."""
    old = Path.cwd()
    os.chdir(tmp_path)
    try:
        yield tmp_path
    finally:
        os.chdir(old)
