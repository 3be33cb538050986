"""Hook specifications: every extension point of kbtool.

Most hooks follow the ``register_*(register)`` pattern: kbtool passes a callback and the
plugin calls ``register(name, thing)`` once per thing it provides.  Hooks that pick one
answer are ``firstresult``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("kbtool")
hookimpl = pluggy.HookimplMarker("kbtool")

Register = Callable[[str, Any], None]


@hookspec
def register_task_sources(register: Register) -> None:
    """Register task sources: ``register(name, source)`` where ``source`` has
    ``tasks(config) -> list[Task]`` (see ``kbtool.task.model.TaskSource``)."""


@hookspec
def register_task_kinds(register: Register) -> None:
    """Register evaluators for a kind of task: ``register(kind, evaluator)`` where the
    evaluator implements ``kbtool.task.model.TaskKind`` (prepare in the parent, check in the
    isolated child)."""


@hookspec
def register_timers(register: Register) -> None:
    """Register timing backends: ``register(name, timer)`` where ``timer`` is a
    ``kbtool.timing.base.Timer``."""


@hookspec(firstresult=True)
def default_timer(device: str) -> str | None:
    """Name the timer to use on ``device`` ("cpu", "cuda") when the user picks none."""


@hookspec
def register_providers(register: Register) -> None:
    """Register LLM providers: ``register(name, provider_factory)``; models are then named
    ``name/model``."""


@hookspec
def register_container_engines(register: Register) -> None:
    """Register container engines (docker, podman, apptainer, ...): ``register(name, engine_cls)``."""


@hookspec
def register_schedulers(register: Register) -> None:
    """Register batch schedulers (slurm, ...): ``register(name, scheduler_cls)``."""


@hookspec
def register_site_profiles(register: Register) -> None:
    """Register HPC site profiles: ``register(name, profile)`` where ``profile`` is a mapping
    or a path to a YAML file."""


@hookspec
def register_search_strategies(register: Register) -> None:
    """Register search strategies: ``register(name, strategy_factory)``."""


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``kbtool`` CLI; ``cli`` is the root ``typer.Typer`` app."""


@hookspec
def register_eval_backends(register: Register) -> None:
    """Register evaluation backends: ``register(name, factory)`` where ``factory(config)``
    returns a ``kbtool.evaluation.backend.EvalBackend``; chosen with ``eval_backend=NAME``."""


@hookspec
def register_trackers(register: Register) -> None:
    """Register experiment trackers: ``register(name, factory)`` where ``factory()`` returns
    a ``kbtool.tracking.Tracker``; chosen with ``tracker=NAME[,NAME...]``."""
