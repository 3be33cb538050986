"""What several commands share: resolving settings from their words and options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kbtool.config import Config, load_config
from kbtool.errors import UsageError


def make_config(overrides: dict[str, Any], config_file: Path | None, profile: str | None,
                sizes: list[str] | None = None, **options: Any) -> Config:
    """Settings from ``key=value`` words, ``--size NAME=VALUE`` and command options."""
    overrides = dict(overrides)
    for item in sizes or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--size takes NAME=VALUE, got {item!r}")
        overrides[f"sizes.{name}"] = value
    overrides.update({k: v for k, v in options.items() if v is not None})
    return load_config(overrides, config_file, profile)


def no_words(command: str, words: list[str]) -> None:
    if words:
        raise UsageError(f"{command} takes key=value settings, not {words[0]!r}")
