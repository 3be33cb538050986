from __future__ import annotations

from collections.abc import Iterator

import pytest

from kbtool.evaluation.evaluator import Evaluator
from tests.helpers import make_config


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
