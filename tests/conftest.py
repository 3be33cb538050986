from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from kbtool.evaluation.evaluator import Evaluator
from tests.helpers import make_config

# Tests press Ctrl-C on kbtool (SIGINT).  A shell without job control starts background
# commands with SIGINT ignored, and every child inherits that (Python then never raises
# KeyboardInterrupt): a CI job started so would fail them.  A handled signal is reset to
# the default in the children.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads or writes the user's config or cache."""
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(root / "xdg-config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
    monkeypatch.delenv("KBTOOL_CONFIG", raising=False)


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evaluator]:
    with Evaluator(make_config(tmp_path_factory.mktemp("eval"), device="cpu")) as ev:
        yield ev
