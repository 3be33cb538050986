"""Typed, cached access to what plugins registered.

Each category is one ``register_*`` hook.  ``registry.TIMERS.all()`` is ``{name: timer}``
(collected once per set of loaded plugins), ``registry.TIMERS.get("cpu")`` the timer or a
one-line ``unknown timer 'cpux' (did you mean 'cpu'?)`` error.  Everything kbtool resolves
by name (task sources and kinds, timers, providers, strategies, container engines,
schedulers, site profiles, evaluation backends, experiment trackers) goes through here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from kbtool.errors import unknown
from kbtool.plugin import manager

if TYPE_CHECKING:
    from kbtool.task.kind import TaskKind
    from kbtool.task.model import TaskSource
    from kbtool.timing.base import Timer
    from kbtool.tracking import Tracker

T = TypeVar("T")


@dataclass(frozen=True)
class Category(Generic[T]):
    hook: str
    noun: str                     # "task source": used in error messages
    hint: str | None = None       # said when nothing of this kind is registered
    adapt: Callable[[str, Any], Any] | None = None  # turns what was registered into a T

    def all(self) -> dict[str, T]:
        key = (self.hook, manager.generation())
        found = _cache.get(key)
        if found is None:
            found = manager.collect(self.hook)
            if self.adapt is not None:
                found = {name: self.adapt(name, thing) for name, thing in found.items()}
            _cache[key] = found
        return dict(found)

    def get(self, name: str) -> T:
        found = self.all()
        if name not in found:
            raise unknown(self.noun, name, found, self.hint)
        return found[name]

    def names(self) -> list[str]:
        return sorted(self.all())


_cache: dict[tuple[str, tuple[str, ...]], dict[str, Any]] = {}

TASK_SOURCES: Category[TaskSource] = Category("register_task_sources", "task source")
TASK_KINDS: Category[TaskKind] = Category("register_task_kinds", "task kind",
                                          adapt=lambda name, thing: _as_kind(name, thing))
TIMERS: Category[Timer] = Category("register_timers", "timer")
PROVIDERS: Category[Callable[..., Any]] = Category("register_providers", "LLM provider")
STRATEGIES: Category[Callable[..., Any]] = Category("register_search_strategies", "strategy")
CONTAINER_ENGINES: Category[type] = Category("register_container_engines", "container engine")
SCHEDULERS: Category[type] = Category("register_schedulers", "scheduler")
SITE_PROFILES: Category[Any] = Category("register_site_profiles", "site profile")
EVAL_BACKENDS: Category[Callable[..., Any]] = Category("register_eval_backends",
                                                        "evaluation backend")
TRACKERS: Category[Callable[[], Tracker]] = Category("register_trackers", "tracker")


def _as_kind(name: str, thing: Any) -> TaskKind:
    from kbtool.task.kind import as_kind

    return as_kind(name, thing)
