"""Configuration: one pydantic model, YAML files, named profiles and ``key=value`` words."""

from kbtool.config.settings import (
    DEFAULT_TOLERANCES,
    EVAL_KEYS,
    Config,
    Tolerance,
    config_as_yaml,
    load_config,
    parse_value,
    split_overrides,
)

__all__ = ["DEFAULT_TOLERANCES", "EVAL_KEYS", "Config", "Tolerance", "config_as_yaml",
           "load_config", "parse_value", "split_overrides"]
