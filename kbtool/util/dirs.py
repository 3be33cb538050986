"""Per-user directories (platformdirs: XDG on Linux, the platform's own elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "kbtool"


def cache_dir() -> Path:
    """Baselines, LLM answers, locks, worker scratch."""
    return Path(platformdirs.user_cache_dir(APP, appauthor=False))


def config_dir() -> Path:
    """config.yaml, site profiles, job records."""
    return Path(platformdirs.user_config_dir(APP, appauthor=False))


def user_config_path() -> Path:
    if "KBTOOL_CONFIG" in os.environ:
        return Path(os.environ["KBTOOL_CONFIG"])
    return config_dir() / "config.yaml"
