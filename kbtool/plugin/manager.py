"""The one plugin manager: built-in plugins from ``plugins/``, then the ``kbtool`` entry points.

Environment:
- ``KBTOOL_LOAD_PLUGINS=a,b``: load only these third-party plugins (empty string: none).
- ``KBTOOL_BLOCK_PLUGINS=a,b``: never load these (third-party or built-in short names).

A plugin must never stop kbtool: one that fails to import, that pluggy refuses, whose hook
raises, or that implements a hook kbtool does not have (a misspelling) is reported in one
warning line and the rest goes on.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kbtool import __version__
from kbtool.plugin import hookspecs

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kbtool"
_IMPL_MARKER = f"{ENTRY_POINT_GROUP}_impl"  # the attribute pluggy's HookimplMarker sets

# Built-in plugins, loaded exactly like third-party ones (each a module of hookimpls).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "kbtool_plugins.kernelbench",
    "kbtool_plugins.perf",
    "kbtool_plugins.repo",
    "kbtool_plugins.timers",
    "kbtool_plugins.strategies",
    "kbtool_plugins.provider_replay",
    "kbtool_plugins.provider_openai",
    "kbtool_plugins.provider_litellm",
    "kbtool_plugins.engines",
    "kbtool_plugins.slurm",
    "kbtool_plugins.backends",
    "kbtool_plugins.repo_service",
    "kbtool_plugins.hf",
    "kbtool_plugins.trackers",
)


@dataclass
class PluginInfo:
    name: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)


pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
pm.add_hookspecs(hookspecs)
_infos: dict[str, PluginInfo] = {}
_loaded = False


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def hook_names() -> list[str]:
    """Every hook kbtool defines."""
    marker = f"{ENTRY_POINT_GROUP}_spec"
    return sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), marker))


def unknown_hooks(plugin: object) -> list[str]:
    """Names marked ``@hookimpl`` on ``plugin`` that are no kbtool hook."""
    known = set(hook_names())
    found = []
    for name in dir(plugin):
        try:
            value = getattr(plugin, name)
        except Exception:  # a property that raises: not a hook implementation
            continue
        if hasattr(value, _IMPL_MARKER) and name not in known:
            found.append(name)
    return found


def _register(module: Any, name: str, version: str, builtin: bool) -> None:
    try:
        pm.register(module, name=name)
    except Exception as exc:  # a broken plugin must not stop kbtool
        log.warning("plugin %r could not be registered: %s", name, exc)
        return
    for hook in unknown_hooks(module):
        close = difflib.get_close_matches(hook, hook_names(), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        log.warning("plugin %r implements %r, which is not a kbtool hook%s; it is never "
                    "called", name, hook, hint)
    hooks = sorted(h.name for h in pm.get_hookcallers(module) or [] if h.has_spec())
    _infos[name] = PluginInfo(name=name, version=version, builtin=builtin, hooks=hooks)


def load_plugins() -> pluggy.PluginManager:
    """Load built-in and third-party plugins once; safe to call repeatedly."""
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    blocked = _env_list("KBTOOL_BLOCK_PLUGINS") or set()
    allowed = _env_list("KBTOOL_LOAD_PLUGINS")
    for module_name in DEFAULT_PLUGINS:
        short = module_name.rsplit(".", 1)[-1]
        if short in blocked or module_name in blocked:
            continue
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            log.warning("built-in plugin %r failed to load (%s: %s)", short,
                        type(exc).__name__, exc)
            continue
        _register(module, short, __version__, builtin=True)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked or (allowed is not None and ep.name not in allowed):
            continue
        if ep.name in _infos:
            if ep.dist is None or _infos[ep.name].version != ep.dist.version:
                log.warning("plugin name %r is taken; the entry point %s is skipped",
                            ep.name, ep.value)
            continue  # else: the same distribution found twice on sys.path
        try:
            module = ep.load()
        except Exception as exc:
            log.warning("plugin %r failed to load (%s: %s); skipped", ep.name,
                        type(exc).__name__, exc)
            continue
        version = ep.dist.version if ep.dist is not None else "unknown"
        _register(module, ep.name, version, builtin=False)
    return pm


def plugin_infos() -> list[PluginInfo]:
    load_plugins()
    return list(_infos.values())


def collect(hook_name: str) -> dict[str, Any]:
    """Call a ``register_*(register)`` hook and return ``{name: thing}``.

    Third-party plugins are called before built-ins (pluggy's order: the last registered
    first), so a third-party plugin may replace a built-in of the same name; the first
    registration of a name wins and a second one is reported.  A plugin whose hook raises
    is reported and skipped; the others still register.  Callers use the cached, typed
    accessors of :mod:`kbtool.plugin.registry` rather than this.
    """
    load_plugins()
    found: dict[str, Any] = {}
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        owner = impl.plugin_name

        def register(name: str, thing: Any, owner: str = owner) -> None:
            if name in found:
                log.warning("%s: %r from plugin %r is registered already; keeping the first",
                            hook_name, name, owner)
                return
            found[name] = thing

        call_guarded(owner, hook_name, impl.function, register=register)
    return found


def call_each(hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook, each guarded: one that raises is reported and
    the others still run.  Returns the results of those that did not raise."""
    load_plugins()
    results = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        names = set(impl.argnames)
        ok, value = call_guarded(impl.plugin_name, hook_name, impl.function,
                                 **{k: v for k, v in kwargs.items() if k in names})
        if ok:
            results.append(value)
    return results


def call_guarded(owner: str, hook_name: str, function: Any, **kwargs: Any) -> tuple[bool, Any]:
    try:
        return True, function(**kwargs)
    except Exception as exc:
        log.warning("plugin %r failed in %s (%s: %s)", owner, hook_name, type(exc).__name__, exc)
        log.debug("traceback of plugin %r in %s", owner, hook_name, exc_info=True)
        return False, None


def generation() -> tuple[str, ...]:
    """Names of the registered plugins: changes whenever a plugin is added or removed, so
    caches of what the hooks registered know when to look again."""
    load_plugins()
    return tuple(sorted(name for name, _ in pm.list_name_plugin()))
