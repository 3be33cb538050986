"""The perf plugin: the ``perf`` task kind (performance commits of real libraries), its task
source and the ``kbtool perf`` commands.

- ``settings``: the section, the task payload, the result details;
- ``releases``: source archives from PyPI by pip, cached by content hash, or commits of a
  git repository (``gitrepo``: a clone, a tree per commit); the human patch, a venv;
- ``build``: ``kbtool perf build``, task files from a file of commits;
- ``patching``: the patch-application ladder and what a patch may change;
- ``static_checks``: what a patch adds (clocks, frames, processes, files, the benchmark);
- ``runner`` / ``judge``: one workload run in a fresh process, timed from outside;
- ``workloads``: the visible and hidden workloads, their files and params;
- ``check``: one candidate's check and its scores; ``audit``: ``kbtool tasks check``;
- ``kind``: the kind; ``report``: the 3-way table, Opt@K and the speed ratio;
- ``containers``: the same check's runs inside Podman (podman-py) or Apptainer (spython),
  ``perf_engine``; ``launcher``: the first process of a run's container.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kbtool.plugin.hookspecs import hookimpl


@hookimpl
def register_task_kinds(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.perf.kind import PerfKind

    register("perf", PerfKind())


@hookimpl
def register_task_sources(register: Callable[[str, Any], None]) -> None:
    from kbtool_plugins.perf.sources import PerfSource

    register("perf", PerfSource())


@hookimpl
def register_commands(cli: Any) -> None:
    from kbtool_plugins.perf.commands import perf_app

    cli.add_typer(perf_app, name="perf")
