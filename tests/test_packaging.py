"""The wheel ships every package: pyproject lists them by hand (find_packages cannot follow
the folder renames), so a new sub-package must be added there or a non-editable install
lacks it."""

from __future__ import annotations

import pytest

from tests.helpers import REPO

tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")


def test_every_package_folder_is_listed() -> None:
    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, folders = set(setuptools["packages"]), setuptools["package-dir"]
    missing = []
    for name, folder in folders.items():
        for init in sorted((REPO / folder).rglob("__init__.py")):
            parts = init.parent.relative_to(REPO / folder).parts
            if "__pycache__" in parts or "fixtures" in parts:
                continue
            package = ".".join((name, *parts))
            if package not in listed:
                missing.append(package)
    assert not missing, f"not in pyproject's packages: {missing}"
