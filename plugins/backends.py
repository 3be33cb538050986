"""Built-in evaluation backends: ``local`` (warm evaluators on this machine) and ``queue``
(workers over a shared directory)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbtool.plugin.hookspecs import hookimpl


@hookimpl
def register_eval_backends(register: Callable[[str, Any], None]) -> None:
    from kbtool.evaluation.backend import LocalBackend, QueueBackend

    register("local", LocalBackend)
    register("queue", QueueBackend)
