"""Shared set-up of the perf tests: one cache of real releases per session (packaging 25.0
and 26.0 from PyPI, by pip: the source archives, pinned by hash, and a venv per version),
and candidate patches made from the baseline's own files."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kbtool.config import Config
from kbtool.errors import KbtoolError
from kbtool.evaluation.evaluator import Evaluator
from kbtool.task import catalog
from kbtool.task.model import Task
from kbtool_plugins.perf import releases
from kbtool_plugins.perf.kind import payload_of, task_dir
from tests.helpers import TESTS, make_config

TASK = "perf/packaging-canonicalize"
FIXTURE_TASKS = TESTS / "perf" / "fixtures" / "tasks"
# Few rounds: these tests check verdicts and fields, the benchmark checks the statistics.
QUICK = {"perf.min_rounds": 3, "perf.max_rounds": 4, "perf.equivalence_seeds": 1,
         "perf_tasks_dir": str(FIXTURE_TASKS)}


@pytest.fixture(scope="session")
def perf_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache holding packaging 25.0 and 26.0, prepared once for the session (skipped
    with the reason where PyPI cannot be reached)."""
    cache = tmp_path_factory.getbasetemp() / "perf-cache"
    config = make_config(cache.parent, cache_dir=str(cache))
    try:
        task = catalog.resolve(TASK, config)
        releases.prepare(payload_of(task), config, task_dir(task))
    except KbtoolError as exc:
        pytest.skip(f"cannot prepare {TASK} (PyPI unreachable?): {exc}")
    return cache


@pytest.fixture(scope="module")
def perf_config(perf_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Config:
    return make_config(tmp_path_factory.mktemp("perf"), device="cpu",
                       cache_dir=str(perf_cache), **QUICK)


@pytest.fixture(scope="module")
def perf_evaluator(perf_config: Config) -> Iterator[Evaluator]:
    with Evaluator(perf_config) as evaluator:
        yield evaluator


@pytest.fixture(scope="module")
def canonicalize_task(perf_config: Config) -> Task:
    return catalog.resolve(TASK, perf_config)


@pytest.fixture(scope="module")
def baseline_file(perf_config: Config, canonicalize_task: Task) -> Callable[[str], str]:
    """The text of a file of the baseline release's tree."""
    where = releases.locate(payload_of(canonicalize_task), perf_config,
                            task_dir(canonicalize_task))
    return lambda rel: (where.baseline_tree / rel).read_text()


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


UTILS = "src/packaging/utils.py"
