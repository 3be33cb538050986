"""The repository plugin: method generation, completion and program repair on real
repositories, judged by their own test suites.

- ``repository``: releases fetched from PyPI source archives by pip, cached by content hash,
  read-only;
- ``runner`` (with ``harness``): one edit checked by the repository's own tests in a fresh
  workspace under kbtool's sandbox, per-test outcomes the candidate cannot forge;
- ``settings``, ``candidate``, ``dataset``, ``kind``: the ``repo`` task kind and source;
- ``build`` (``mutate``, ``cli``): ``kbtool tasks build``; ``strategy``: ``multiturn``;
  ``report``: its section of ``kbtool report``; ``containers``: Podman and Apptainer.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbtool.plugin.hookspecs import hookimpl


@hookimpl
def register_task_kinds(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.repo.kind import RepoKind

    register("repo", RepoKind())


@hookimpl
def register_task_sources(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.repo.dataset import RepoSource

    register("repo", RepoSource())


@hookimpl
def register_commands(cli: Any) -> None:
    """``kbtool tasks build`` (a subcommand of the core's ``tasks`` group)."""
    from kbtool.cli.app import tasks_app
    from kbtool_plugins.repo.cli import register

    register(tasks_app)


@hookimpl
def register_search_strategies(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.repo.strategy import multiturn

    register("multiturn", multiturn)
