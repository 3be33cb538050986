"""Hostile patches (the perf kind's red team): each one tries a way to fake a speedup or
pass a wrong result, and each must be refused, rejected or found incorrect, never scored.
Several get past the static checks on purpose, to show the run-time checks behind them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from kbtool.config import Config
from kbtool.evaluation.evaluator import Evaluator
from kbtool.task import catalog
from kbtool.task.model import Task
from kbtool_plugins.perf.judge import load_workload
from kbtool_plugins.perf.releases import file_diff
from tests.perf.conftest import UTILS, edit
from tests.perf.test_eval import OLD_BODY, evaluate, utils_patch

IMPORTS = "import re\n"


def at_import(baseline_file: Callable[[str], str], code: str) -> str:
    """A patch that adds ``code`` to utils.py's imports (it runs when the module loads)."""
    return utils_patch(baseline_file, IMPORTS, IMPORTS + code)


@pytest.mark.parametrize(("name", "make", "status", "says"), [
    ("edits a test", lambda f: file_diff("tests/test_utils.py", f("tests/test_utils.py"),
                                         f("tests/test_utils.py") + "\nX = 1\n"),
     "rejected", "outside the package"),
    ("adds sitecustomize", lambda f: file_diff("src/sitecustomize.py", None, "import os\n"),
     "rejected", "outside the package"),
    ("patches the clock", lambda f: at_import(f, "import time\ntime.perf_counter = "
                                              "lambda: 0.0\n"), "rejected", "clocks"),
    ("reads its caller's frame", lambda f: at_import(
        f, "import sys\n_F = sys._getframe\n"), "rejected", "callers"),
    ("caches results in a file", lambda f: at_import(
        f, "import pickle\n"), "rejected", "files"),
    ("spawns a helper process", lambda f: at_import(
        f, "import subprocess\n"), "rejected", "processes"),
    # past the static checks: caught at run time
    ("writes a file beside its source", lambda f: at_import(
        f, "import pathlib\npathlib.Path(__file__).with_name('cache.txt').touch()\n"),
     "rejected", "changed files the benchmark relies on"),
    ("leaves a process running", lambda f: at_import(
        f, "import asyncio\nasyncio.run(asyncio.create_subprocess_exec('sleep', '30'))\n"),
     "rejected", "process"),
    ("equal to everything", lambda f: utils_patch(
        f, OLD_BODY, OLD_BODY + "    class _Same(str):\n        def __eq__(self, other):\n"
        "            return True\n        __hash__ = str.__hash__\n"
        "    value = _Same(value[:1])\n"), "incorrect", "not equivalent"),
])
def test_hostile_patch(name: str, make: Callable[[Callable[[str], str]], str], status: str,
                       says: str, perf_evaluator: Evaluator, canonicalize_task: Task,
                       baseline_file: Callable[[str], str], tmp_path: Path) -> None:
    result = evaluate(perf_evaluator, canonicalize_task, make(baseline_file), tmp_path)
    assert result.status.value == status, (name, result.error)
    assert says in (result.error or ""), (name, result.error)
    assert result.speedup is None


def test_a_clock_patched_past_the_static_checks_changes_nothing(
        perf_evaluator: Evaluator, canonicalize_task: Task,
        baseline_file: Callable[[str], str], tmp_path: Path) -> None:
    """The judge keeps the time in its own process: a candidate that stops every clock of
    its own process gets no speedup from it."""
    patch = at_import(baseline_file, "import time as _t\n_t.__dict__.update(perf_counter="
                                     "lambda: 0.0, monotonic=lambda: 0.0)\n")
    result = evaluate(perf_evaluator, canonicalize_task, patch, tmp_path)
    assert result.status.value == "ok", result.error
    assert (result.speedup or 0) < 1.5
    assert result.speedup_ci is not None and result.speedup_ci[0] < 1.3


def test_work_moved_to_import_time_is_rejected(perf_evaluator: Evaluator, perf_config: Config,
                                               baseline_file: Callable[[str], str],
                                               tmp_path: Path) -> None:
    """The small-domain task's names could all be canonicalised at import time: a patch
    that does so is fast inside the timed region and slower outside it.  The check runs on
    a gain the rounds call significant; on a machine too busy for that the patch is not
    shown faster either, so it gains nothing (CI once got there at 6 rounds).  The names up
    to 7 characters take about 0.1 s here, well above ``moved_work_floor_ms`` (15 ms): up to
    6 characters (20 ms measured here, 8 ms in a busy CI run) sat at the floor."""
    task = catalog.resolve("perf/small-domain", perf_config)
    precompute = ("import itertools as _it\n_PRE = {}\nfor _n in range(1, 8):\n"
                  "    for _t in _it.product('aB-_.', repeat=_n):\n"
                  "        _s = ''.join(_t)\n"
                  "        _PRE[_s] = re.sub(r'[-_.]+', '-', _s).lower()\n")
    text = baseline_file(UTILS)
    text = edit(text, IMPORTS, IMPORTS + precompute)
    text = edit(text, OLD_BODY, "    value = _PRE.get(name)\n    if value is None:\n"
                "        value = _canonicalize_regex.sub('-', name).lower()\n")
    config = perf_config.with_section(perf_config.section(
        catalog.kind_of(task).settings_model).model_copy(  # type: ignore[union-attr]
        update={"min_rounds": 10, "max_rounds": 10}))
    result = evaluate(perf_evaluator, task, file_diff(UTILS, baseline_file(UTILS), text),
                      tmp_path, config)
    if result.status.value == "ok":
        assert not result.significant, result.speedup_ci
    else:
        assert result.status.value == "rejected", result.error
        assert "work moved out of the timed region" in (result.error or "")


def test_a_patch_fitted_to_the_visible_workload_is_flagged_and_scored_on_hidden(
        perf_evaluator: Evaluator, perf_config: Config,
        baseline_file: Callable[[str], str], tmp_path: Path) -> None:
    """The prompt shows the workload's generator; a table of its vocabulary's canonical
    forms makes the visible workload fast and leaves the hidden one (another vocabulary,
    never shown) as slow as before: flagged overfits_workload, and the score is the hidden
    workload's, no gain."""
    task = catalog.resolve("perf/vocabulary", perf_config)
    module = load_workload(Path(str(task.path)).with_name("vocabulary.py"))
    table = {w: re.sub(r"[-_.]+", "-", w).lower() for w in module.WORDS}
    text = baseline_file(UTILS)
    text = edit(text, IMPORTS, IMPORTS + f"_SEEN = {table!r}\n")
    text = edit(text, OLD_BODY, "    value = _SEEN.get(name)\n    if value is not None:\n"
                "        return value  # type: ignore[return-value]\n" + OLD_BODY)
    patch = file_diff(UTILS, baseline_file(UTILS), text)
    config = perf_config.with_section(perf_config.section(
        catalog.kind_of(task).settings_model).model_copy(  # type: ignore[union-attr]
        update={"min_rounds": 6, "max_rounds": 6}))
    result = evaluate(perf_evaluator, task, patch, tmp_path, config)
    assert result.status.value == "ok", result.error
    extra = result.model_extra or {}
    assert "overfits_workload" in result.flags, (extra["overfit"], extra["overfit_ci"])
    assert extra["visible_speedup"] > 2 * (extra["hidden_speedup"] or 0), extra
    assert extra["scored_on"] == "hidden" and result.speedup == extra["hidden_speedup"]
    assert not extra["opt_base"] and not extra["opt_commit"]


def test_an_honest_patch_whose_import_is_slow_on_the_clock_is_not_rejected(
        perf_evaluator: Evaluator, canonicalize_task: Task,
        baseline_file: Callable[[str], str], tmp_path: Path) -> None:
    """Moved work is decided on CPU time, not on the untimed phases' wall time, which other
    load (here: a sleep at import, as a busy machine would stretch it) makes longer without
    any work moved: the honest patch stays ok (the wall-time rule rejected it)."""
    text = baseline_file(UTILS)
    text = edit(text, IMPORTS, IMPORTS + "import time as _time\n_time.sleep(0.3)\n")
    text = edit(text, OLD_BODY, '    value = name.lower().replace("_", "-").replace(".", "-")\n'
                '    while "--" in value:\n        value = value.replace("--", "-")\n')
    result = evaluate(perf_evaluator, canonicalize_task, file_diff(UTILS, baseline_file(UTILS),
                                                                   text), tmp_path)
    assert result.status.value == "ok", result.error
    assert ((result.model_extra or {})["moved_out_ms"] or 0) < 15
