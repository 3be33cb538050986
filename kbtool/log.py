"""Diagnostics go through :mod:`logging`: one stderr handler for the ``kbtool`` and
``kbtool_plugins`` loggers, lines prefixed ``kbtool:`` (``kbtool: warning: ...``).

``--verbose`` (or ``KBTOOL_LOG_LEVEL=DEBUG``) adds the debug lines: tracebacks behind
one-line errors, commands run, decisions made.  Command output (tables, JSON, progress) is
not logging and goes to stdout/stderr directly.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

ROOTS = ("kbtool", "kbtool_plugins")


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and record.levelno <= logging.DEBUG:
            message += "\n" + self.formatException(record.exc_info)
        if record.levelno >= logging.ERROR:
            return f"kbtool: error: {message}"
        if record.levelno >= logging.WARNING:
            return f"kbtool: warning: {message}"
        if record.levelno >= logging.INFO:
            return f"kbtool: {message}"
        return f"kbtool: debug: [{record.name}] {message}"


class _Once(logging.Filter):
    """Each warning once per process: registries and checks may repeat them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING:
            return True
        key = record.getMessage()
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


_handler: logging.Handler | None = None


def setup(verbose: bool = False) -> None:
    """Install the stderr handler (once) and set the level."""
    global _handler
    level_name = "DEBUG" if verbose else os.environ.get("KBTOOL_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelName(level_name)
    if not isinstance(level, int):
        level = logging.INFO
    if _handler is None:
        _handler = logging.StreamHandler(sys.stderr)
        _handler.setFormatter(_Format())
        _handler.addFilter(_Once())
    for name in ROOTS:
        logger = logging.getLogger(name)
        if _handler not in logger.handlers:
            logger.addHandler(_handler)
        logger.setLevel(level)
        logger.propagate = False


def verbose() -> bool:
    return logging.getLogger("kbtool").isEnabledFor(logging.DEBUG)


@contextmanager
def quiet() -> Iterator[None]:
    """Only errors inside the block (a second process repeating the first one's warnings)."""
    loggers = [logging.getLogger(name) for name in ROOTS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
