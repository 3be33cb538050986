"""kbtool: search for better code with LLM agents, and measure it honestly."""

from kbtool import compat

__version__ = "0.2.0"

compat.install()  # kbtool 0.1's module names keep working (with a deprecation line)
