"""What a patch adds to the library's code, read before any of it runs."""

from __future__ import annotations

import pytest

from kbtool_plugins.perf.static_checks import check_module

BASE = "import re\n_R = re.compile('[-_.]+')\n\ndef canonical(name):\n    return _R.sub('-', name)\n"


@pytest.mark.parametrize(("added", "why"), [
    ("import time\nT = time.perf_counter\n", "clocks"),
    ("import time\ntime.perf_counter = lambda: 0.0\n", "clocks"),
    ("import sys\nW = sys._getframe(1).f_code.co_name\n", "callers"),
    ("import gc\nX = gc.get_objects()\n", "callers"),
    ("import subprocess\n", "processes"),
    ("import os\nP = os.fork\n", "processes"),
    ("import pickle\n", "files"),
    ("CACHE = open('/tmp/cache', 'w')\n", "files"),
    ("import os\nFD = os.open('/tmp/c', os.O_WRONLY | os.O_CREAT)\n", "files"),
    ("import ctypes\n", "outside Python"),
    ("K = vars()['perf_counter']\n", "clocks"),  # the name in a string
    ("def experiment(api, data):\n    return []\n", "benchmark"),
    ("def check_equivalence(a, b):\n    return True\n", "benchmark"),
    ("WORKLOAD = 'canonicalize_names'\nX = canonicalize_names\n", "benchmark"),
])
def test_hostile_additions_are_refused(added: str, why: str) -> None:
    found = check_module("pkg/utils.py", BASE, BASE + added, {"canonicalize_names"})
    assert found.refused and why in found.refused[0], found


def test_honest_optimisations_pass() -> None:
    honest = BASE.replace("return _R.sub('-', name)",
                          "value = name.lower().replace('_', '-').replace('.', '-')\n"
                          "    while '--' in value:\n        value = value.replace('--', '-')\n"
                          "    return value")
    honest += ("import functools\n_TABLE = str.maketrans('_.', '--')\n"
               "_P = re.compile('x')  # a new regex is fine\n"
               "@functools.lru_cache(maxsize=None)\ndef cached(x):\n"
               "    '''An experiment with perf_counter in a docstring is fine.'''\n"
               "    raise ValueError('invalid system name')\n")
    found = check_module("pkg/utils.py", BASE, honest, {"canonicalize_names"})
    assert found.refused == [] and found.flags == []


def test_what_the_baseline_already_uses_is_not_held_against_a_patch() -> None:
    base = BASE + "import time\nSTART = time.perf_counter()\n"
    assert check_module("pkg/utils.py", base, base + "Y = time.perf_counter()\n", set()).refused == []
    assert check_module("pkg/new.py", None, "import time\nT = time.perf_counter()\n",
                        set()).refused  # a new module has no baseline


@pytest.mark.parametrize(("added", "flag"), [
    ("import threading\nL = threading.Lock()\n", "threads"),
    ("M = __import__('ti' + 'me')\n", "dynamic_code"),
    ("import time\nC = getattr(time, 'perf' + '_counter')\n", "dynamic_code"),
    ("from builtins import ExceptionGroup\n", "dynamic_code"),
    ("V = compile('1 + 1', '', 'eval')\n", "dynamic_code"),
])
def test_what_honest_libraries_use_too_is_flagged_not_refused(added: str, flag: str) -> None:
    found = check_module("pkg/utils.py", BASE, BASE + added, set())
    assert found.refused == [] and found.flags == [flag], found
