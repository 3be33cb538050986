"""The KernelBench plugin: the ``kernelbench`` task kind and its task sources.

A KernelBench problem is a PyTorch ``Model`` with ``get_inputs``/``get_init_inputs`` and
module-level size constants; a candidate defines ``ModelNew``.  Everything specific to that
format lives in this package: loading problems and applying size overrides
(``problem``), comparing outputs (``compare``), the run-time guards and static checks of the
integrity suite (``guards``, ``static_checks``), the kind itself (``kind``) and the sources
``builtin``, ``kernelbench`` and ``dir`` (``sources``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbtool.plugin.hookspecs import hookimpl


@hookimpl
def register_task_kinds(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.kernelbench.kind import KernelBenchKind

    register("kernelbench", KernelBenchKind())


@hookimpl
def register_task_sources(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.kernelbench.sources import BuiltinSource, DirSource, KernelBenchSource

    register("builtin", BuiltinSource())
    register("kernelbench", KernelBenchSource())
    register("dir", DirSource())
