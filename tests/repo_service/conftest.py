"""Fixtures: the small repository of ``mini.py`` and a service over it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.repo_service.mini import Mini, Service, make_mini


@pytest.fixture(scope="session")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Mini:
    return make_mini(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="module")
def service(mini: Mini) -> Iterator[Service]:
    svc = Service(mini, workspaces=2).start()
    try:
        yield svc
    finally:
        svc.kill()
