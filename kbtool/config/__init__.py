"""Configuration: one pydantic model, task kinds' sections, YAML files, named profiles and
``key=value`` words."""

from kbtool.config.load import (
    annotated_yaml,
    config_as_dict,
    config_as_yaml,
    eval_settings,
    load_config,
    parse_value,
    route,
    split_overrides,
    validate,
)
from kbtool.config.model import BUILTIN_PROFILES, EVAL_KEYS, Config, Section

__all__ = ["BUILTIN_PROFILES", "EVAL_KEYS", "Config", "Section", "annotated_yaml",
           "config_as_dict", "config_as_yaml", "eval_settings", "load_config", "parse_value", "route",
           "split_overrides", "validate"]
