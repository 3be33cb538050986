"""A plugin written against kbtool 0.1's names keeps working, with one line naming the new."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import pytest

from kbtool.config import Config
from kbtool.plugin import manager, registry
from kbtool.task.kind import LegacyKind
from tests.helpers import FIXTURES


@pytest.fixture
def legacy_plugin() -> Any:
    """The fixture distribution's plugin written with kbtool 0.1's names, imported here."""
    sys.path.insert(0, str(FIXTURES / "kbtool-demo-plugin" / "src"))
    manager.load_plugins()
    module = importlib.import_module("kbtool_demo_legacy")
    manager.pm.register(module, name="legacy")
    yield module
    manager.pm.unregister(module)
    sys.path.pop(0)
    sys.modules.pop("kbtool_demo_legacy", None)


def test_old_module_names_still_import_with_a_warning(legacy_plugin: Any,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import kbtool.hookspecs  # noqa: F401  (the old name; already imported by the plugin)
    from kbtool.plugin.hookspecs import hookimpl

    assert legacy_plugin.hookimpl is hookimpl
    assert legacy_plugin.Reporter.__module__ == "kbtool.sandbox.isolation"
    for old, new in (("kbtool.isolation", "kbtool.sandbox.isolation"),):
        sys.modules.pop(old, None)
        importlib.import_module(old)
        assert f"{old} is deprecated; import {new}" in caplog.text


def test_an_old_style_kind_is_adapted(legacy_plugin: Any,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """(Evaluating through it, in the evaluation process, is tested with the installed
    distribution in test_third_party_plugin.py.)"""
    kind = registry.TASK_KINDS.get("old")
    assert isinstance(kind, LegacyKind)
    assert "does not subclass kbtool.task.kind.TaskKind" in caplog.text
    task = registry.TASK_SOURCES.get("old").tasks(Config())[0]
    assert task.payload == {"note": "kept"}  # Task(meta=...) became the payload
    assert "Task(meta=...) is deprecated; use Task(payload=...)" in caplog.text
