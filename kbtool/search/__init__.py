"""The agent: search contexts, strategies' building blocks, prompts and ``kbtool run``."""
