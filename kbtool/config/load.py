"""Resolving the configuration: defaults < user config < ./kbtool.yaml < --config FILE <
profile < key=value.

Dotted keys reach into mappings (``sizes.batch_size=16``, ``kernelbench.tolerances.float32.atol=1e-3``).
A task kind's section is a top-level mapping named after it; the keys it lists as
``flat_keys`` are accepted at the top level too.  Every error is one line naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from kbtool.config.model import BUILTIN_PROFILES, EVAL_KEYS, Config, Section
from kbtool.errors import UsageError, unknown
from kbtool.util.dirs import user_config_path


class _Loader(yaml.SafeLoader):
    """YAML with 1.2 booleans: only true/false, so ``sandbox=off`` stays the word "off"."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


def parse_value(text: str) -> Any:
    """A command-line value: YAML scalars and lists (``16``, ``true``, ``[1, 2]``), else text."""
    try:
        return _yaml(text)
    except yaml.YAMLError:
        return text


def split_overrides(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Split positional CLI words into plain words and ``key=value`` overrides."""
    words: list[str] = []
    overrides: dict[str, Any] = {}
    for arg in args:
        key, sep, value = arg.partition("=")
        if sep and key and not key.startswith("-") and "/" not in key:
            overrides[key] = parse_value(value)
        else:
            words.append(arg)
    return words, overrides


def section_models() -> dict[str, type[Section]]:
    """The settings sections of the registered task kinds, by section name."""
    from kbtool.plugin import registry

    found: dict[str, type[Section]] = {}
    for kind in registry.TASK_KINDS.all().values():
        model = getattr(kind, "settings_model", None)
        if isinstance(model, type) and issubclass(model, Section) and model.name:
            if model.name in Config.model_fields:
                continue  # a section may not shadow a core key
            found.setdefault(model.name, model)
    return found


class _Keys:
    """Where each top-level key goes: the core model, a section, or a section by its flat name."""

    def __init__(self) -> None:
        self.sections = section_models()
        self.flat = {key: name for name, model in self.sections.items()
                     for key in model.flat_keys}
        self.core = [k for k in Config.model_fields if k != "sections"]

    def all(self) -> list[str]:
        return [*self.core, *self.sections, *self.flat]

    def check(self, key: str) -> None:
        if key not in self.core and key not in self.sections and key not in self.flat:
            raise unknown("config key", key, self.all())


def _set_dotted(keys: _Keys, data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    keys.check(head)
    if not rest:
        data[head] = value
        return
    node = data.setdefault(head, {})
    parts = rest.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            raise UsageError(f"config key {key!r}: {head!r} has no sub-keys")
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise UsageError(f"config key {key!r}: {head!r} has no sub-keys")
    node[parts[-1]] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of keys to values")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def route(layer: dict[str, Any]) -> dict[str, Any]:
    """Settings as a user or an older kbtool wrote them (flat keys, section mappings) in the
    shape ``validate`` takes (sections under ``sections``)."""
    return _route(_Keys(), layer)


def _route(keys: _Keys, layer: dict[str, Any]) -> dict[str, Any]:
    """One layer with flat keys moved into their sections and sections under ``sections``."""
    core: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for key, value in layer.items():
        if key == "sections" and isinstance(value, dict):  # a dumped Config
            for name, values in value.items():
                keys.check(name)
                sections[name] = _merge(sections.get(name, {}), values or {})
            continue
        keys.check(key)
        if key in keys.sections:
            if not isinstance(value, dict):
                raise UsageError(f"config key {key!r} is a section: give it a mapping of keys")
            sections[key] = _merge(sections.get(key, {}), value)
        elif key in keys.flat:
            sections.setdefault(keys.flat[key], {})[key] = value
        else:
            core[key] = value
    if sections:
        core["sections"] = sections
    return core


def _fields_at(model: type[BaseModel], path: list[str]) -> list[str]:
    """The keys a user may write under ``path`` in ``model`` (for "did you mean")."""
    current: Any = model
    for part in path:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field is not None else None
        else:  # a mapping (dict[str, X]): ``part`` is one of its keys
            args = getattr(current, "__args__", ())
            current = args[-1] if args else None
    if not (isinstance(current, type) and issubclass(current, BaseModel)):
        args = getattr(current, "__args__", ())
        current = args[-1] if args else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _format_error(exc: ValidationError, keys: _Keys, model: type[BaseModel] = Config,
                  section: str | None = None) -> str:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"]]
    shown = loc if section is None or (loc and loc[0] in keys.flat) else [section, *loc]
    where = ".".join(shown)
    if err["type"] == "extra_forbidden":
        choices = _fields_at(model, loc[:-1]) if len(loc) > 1 else (
            list(model.model_fields) if section is not None else keys.all())
        return str(unknown("config key", where, choices, match=loc[-1]))
    return f"config key {where!r}: {err['msg']} (got {err.get('input')!r})"


def validate(data: dict[str, Any], keys: _Keys | None = None) -> Config:
    """A ``Config`` from already routed data, each section validated by its model."""
    keys = keys or _Keys()
    sections = dict(data.get("sections") or {})
    for name, values in list(sections.items()):
        model = keys.sections.get(name)
        if model is None:
            continue  # a kind that is not installed here: keep its settings as they are
        try:
            sections[name] = model.model_validate(values).model_dump(mode="json")
        except ValidationError as exc:
            raise UsageError(_format_error(exc, keys, model, name)) from None
    try:
        config = Config(**{**data, "sections": sections})
    except ValidationError as exc:
        raise UsageError(_format_error(exc, keys)) from None
    named = {"mode": [config.mode] if config.mode is not None else [],
             "baselines": config.baselines or []}
    kinds_baselines = _all_baselines() if any(named.values()) else set()
    for key, names in named.items():
        unknown = [b for b in names if kinds_baselines and b not in kinds_baselines]
        if unknown:
            raise UsageError(f"config key {key!r}: {unknown[0]!r} is no task kind's baseline "
                             f"(baselines: {', '.join(sorted(kinds_baselines))})")
    return config


def _all_baselines() -> set[str]:
    from kbtool.plugin import registry

    return {b for kind in registry.TASK_KINDS.all().values()
            for b in getattr(kind, "baselines", ())}


def load_config(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    profile: str | None = None,
) -> Config:
    """Resolve the configuration from every layer; raise UsageError on any bad key or value."""
    keys = _Keys()
    layers: list[dict[str, Any]] = []
    profiles: dict[str, dict[str, Any]] = dict(BUILTIN_PROFILES)
    candidates = [user_config_path(), Path.cwd() / "kbtool.yaml"]
    paths = [p for p in candidates if p.is_file()] + ([config_file] if config_file else [])
    for path in paths:
        data = _read_yaml(path)
        file_profiles = data.pop("profiles", {}) or {}
        if not isinstance(file_profiles, dict):
            raise UsageError(f"config file {path}: 'profiles' must map names to settings")
        profiles.update(file_profiles)
        layers.append(data)
    overrides = dict(overrides or {})
    profile = overrides.pop("profile", None) or profile
    if profile is not None:
        if profile not in profiles:
            raise unknown("config profile", profile, profiles)
        layers.append(profiles[profile])
    cli: dict[str, Any] = {}
    for key, value in overrides.items():
        _set_dotted(keys, cli, key, value)
    layers.append(cli)
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, _route(keys, layer))
    return validate(merged, keys)


def config_as_dict(config: Config) -> dict[str, Any]:
    """The config as it is written to files: sections as top-level mappings, every section
    of an installed kind filled with its defaults."""
    data = config.model_dump(mode="json", exclude={"sections"})
    for name, model in sorted(section_models().items()):
        data[name] = config.section(model).model_dump(mode="json")
    for name, values in config.sections.items():
        data.setdefault(name, values)
    return data


def config_as_yaml(config: Config) -> str:
    return yaml.safe_dump(config_as_dict(config), sort_keys=False)


def annotated_yaml(config: Config, commented: tuple[str, ...] = ()) -> str:
    """``config`` as a file to edit: every key (sections as top-level mappings) with what it
    means above it; the keys in ``commented`` are written as comments (left to their
    defaults where the file is read)."""
    data = config_as_dict(config)
    models = section_models()
    out: list[str] = []

    def entry(key: str, value: Any, field: Any, indent: str) -> None:
        description = getattr(field, "description", None)
        if description:
            out.append(f"{indent}# {description}")
        text = yaml.safe_dump({key: value}, sort_keys=False, width=100).rstrip("\n")
        hide = "# " if not indent and key in commented else ""
        out.extend(f"{indent}{hide}{line}" for line in text.splitlines())

    for key, value in data.items():
        model = models.get(key)
        if model is None:
            entry(key, value, Config.model_fields.get(key), "")
            continue
        out.append(f"# the {key!r} section: settings of that task kind")
        out.append(f"{key}:")
        for name, inner in (value or {}).items():
            entry(name, inner, model.model_fields.get(name), "  ")
    return "\n".join(out) + "\n"


def eval_settings(config: Config) -> dict[str, Any]:
    """What changes an evaluation's verdict or numbers: the core's ``EVAL_KEYS`` and every
    section but its ``local_keys``.  It keys the search's evaluation cache and travels with
    every job sent to a worker (``Config.model_validate`` takes it back)."""
    data = config.model_dump(mode="json", include=set(EVAL_KEYS))
    models = section_models()
    sections = {}
    for name in sorted({*config.sections, *models}):
        # A known section with its defaults filled in: a run that set nothing and the same
        # run resumed from its saved config (every value written out) evaluate alike.
        values = (config.section(models[name]).model_dump(mode="json") if name in models
                  else config.sections[name])
        local = models[name].local_keys if name in models else ()
        sections[name] = {k: v for k, v in values.items() if k not in local}
    data["sections"] = sections
    return data
