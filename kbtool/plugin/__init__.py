"""The plugin system: hook specifications, the plugin manager and the typed registry.

Plugins mark their hook implementations with ``kbtool.plugin.hookimpl``.
"""

from kbtool.plugin.hookspecs import hookimpl, hookspec

__all__ = ["hookimpl", "hookspec"]
