"""The module names of kbtool 0.1, for plugins written against them.

kbtool 0.1 was 41 flat modules (``kbtool.hookspecs``, ``kbtool.task``, ``kbtool.result``,
...).  An import of an old name still works: it gives the module that holds those names now
and logs one line naming it, so a plugin keeps working while its author moves on.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
from types import ModuleType
from typing import Any

log = logging.getLogger(__name__)

# Old module -> the module that holds its public names now.  (``kbtool.task``,
# ``kbtool.timing``, ``kbtool.config`` and ``kbtool.llm`` are packages that export the old
# names themselves.)
MOVED = {
    "kbtool.hookspecs": "kbtool.plugin.hookspecs",
    "kbtool.plugins": "kbtool.plugin.manager",
    "kbtool.catalog": "kbtool.task.catalog",
    "kbtool.result": "kbtool.evaluation.result",
    "kbtool.evaluator": "kbtool.evaluation.evaluator",
    "kbtool.batch": "kbtool.evaluation.batch",
    "kbtool.baselines": "kbtool.evaluation.baselines",
    "kbtool.environment": "kbtool.evaluation.environment",
    "kbtool.stats": "kbtool.timing.stats",
    "kbtool.isolation": "kbtool.sandbox.isolation",
    "kbtool.zygote": "kbtool.sandbox.zygote",
    "kbtool.devicelock": "kbtool.sandbox.devicelock",
    "kbtool.queue": "kbtool.workers.jobqueue",
    "kbtool.worker": "kbtool.workers.worker",
    "kbtool.watch": "kbtool.workers.watch",
    "kbtool.containers": "kbtool.cluster.containers",
    "kbtool.scheduler": "kbtool.cluster.scheduler",
    "kbtool.llm_client": "kbtool.llm.client",
    "kbtool.prompts": "kbtool.search.prompts",
    "kbtool.runstore": "kbtool.runs.store",
    "kbtool.plots": "kbtool.report.plots",
    "kbtool.monitor_state": "kbtool.monitor.state",
    "kbtool.display": "kbtool.ui.display",
    "kbtool.problem": "kbtool_plugins.kernelbench.problem",
    "kbtool.compare": "kbtool_plugins.kernelbench.compare",
    "kbtool.guards": "kbtool_plugins.kernelbench.guards",
    "kbtool.static_checks": "kbtool_plugins.kernelbench.static_checks",
    "kbtool_plugins.kernelbench_kind": "kbtool_plugins.kernelbench.kind",
    "kbtool_plugins.task_sources": "kbtool_plugins.kernelbench.sources",
}


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        log.warning("%s is deprecated; import %s", spec.name, self.new)
        return importlib.import_module(self.new)

    def exec_module(self, module: ModuleType) -> None:
        pass  # the new module is already executed


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())
