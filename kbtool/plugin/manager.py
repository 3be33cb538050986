"""The one plugin manager: built-in plugins from ``plugins/``, then the ``kbtool`` entry points.

Environment:
- ``KBTOOL_LOAD_PLUGINS=a,b``: load only these third-party plugins (empty string: none).
- ``KBTOOL_BLOCK_PLUGINS=a,b``: never load these (third-party or built-in short names).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pluggy

from kbtool import __version__
from kbtool.plugin import hookspecs

ENTRY_POINT_GROUP = "kbtool"

# Built-in plugins, loaded exactly like third-party ones (each a module of hookimpls).
DEFAULT_PLUGINS: tuple[str, ...] = (
    "kbtool_plugins.kernelbench",
    "kbtool_plugins.timers",
    "kbtool_plugins.strategies",
    "kbtool_plugins.provider_replay",
    "kbtool_plugins.provider_openai",
    "kbtool_plugins.provider_litellm",
    "kbtool_plugins.engines",
    "kbtool_plugins.slurm",
)


@dataclass
class PluginInfo:
    name: str
    version: str
    builtin: bool
    hooks: list[str] = field(default_factory=list)


pm = pluggy.PluginManager("kbtool")
pm.add_hookspecs(hookspecs)
_infos: dict[str, PluginInfo] = {}
_loaded = False
_warned: set[str] = set()


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def _warn(message: str) -> None:
    if message not in _warned:  # registries are collected several times per command
        _warned.add(message)
        print(f"kbtool: warning: {message}", file=sys.stderr)


def _register(module: Any, name: str, version: str, builtin: bool) -> None:
    try:
        pm.register(module, name=name)
    except Exception as exc:  # a broken plugin must not stop kbtool
        _warn(f"plugin {name!r} could not be registered: {exc}")
        return
    hooks = sorted(h.name for h in pm.get_hookcallers(module) or [])
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
            _warn(f"built-in plugin {short!r} failed to load ({type(exc).__name__}: {exc})")
            continue
        _register(module, short, __version__, builtin=True)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in blocked or (allowed is not None and ep.name not in allowed):
            continue
        if ep.name in _infos:
            if ep.dist is None or _infos[ep.name].version != ep.dist.version:
                _warn(f"plugin name {ep.name!r} is taken; the entry point {ep.value} is skipped")
            continue  # else: the same distribution found twice on sys.path
        try:
            module = ep.load()
        except Exception as exc:
            _warn(f"plugin {ep.name!r} failed to load ({type(exc).__name__}: {exc}); skipped")
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
    is reported and skipped; the others still register.
    """
    load_plugins()
    found: dict[str, Any] = {}
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):
        owner = impl.plugin_name

        def register(name: str, thing: Any, owner: str = owner) -> None:
            if name in found:
                _warn(f"{hook_name}: {name!r} from plugin {owner!r} is registered already; "
                      "keeping the first")
                return
            found[name] = thing

        try:
            impl.function(register=register)
        except Exception as exc:
            _warn(f"plugin {owner!r} failed in {hook_name} ({type(exc).__name__}: {exc})")
    return found
