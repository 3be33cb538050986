"""kbtool: search for faster GPU kernels with LLM agents, and measure them honestly."""

__version__ = "0.1.0"
