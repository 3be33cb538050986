"""Configuration: defaults < user config < ./kbtool.yaml < --config FILE < profile < key=value.

One pydantic model is the single source of truth for every key, its type and its default.
Dotted keys reach into mappings (``sizes.batch_size=16``, ``tolerances.float32.atol=1e-3``).
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kbtool.errors import KbtoolError


class Tolerance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    atol: float
    rtol: float


# KernelBench's current harness: fp32 1e-4, half precisions 1e-2.
DEFAULT_TOLERANCES = {
    "float64": Tolerance(atol=1e-7, rtol=1e-7),
    "float32": Tolerance(atol=1e-4, rtol=1e-4),
    "float16": Tolerance(atol=1e-2, rtol=1e-2),
    "bfloat16": Tolerance(atol=1e-2, rtol=1e-2),
}

# Settings that change an evaluation's verdict or numbers: they key the search's evaluation
# cache and travel with every job sent to a worker.
EVAL_KEYS = ("device", "mode", "compile_mode", "timer", "seed", "correctness_trials",
             "tolerances", "sizes", "warmup_trials", "min_trials", "max_trials",
             "target_rel_ci", "max_timing_s", "timeout_s", "memory_limit_mb",
             "speedup_flag_threshold", "sandbox")

BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    # Fast, less precise numbers: smoke runs and CI.
    "quick": {"correctness_trials": 2, "min_trials": 5, "max_timing_s": 0.3},
    # Tighter numbers for publication.
    "publish": {"correctness_trials": 10, "min_trials": 30, "target_rel_ci": 0.005,
                "max_timing_s": 10.0},
}


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Task selection
    source: str = Field("builtin", description="task source for level/task_start/task_end")
    level: int | None = Field(None, description="task level to select")
    task_start: int | None = Field(None, description="first task number (inclusive)")
    task_end: int | None = Field(None, description="last task number (inclusive)")
    kernelbench_path: Path | None = Field(None, description="KernelBench checkout or its KernelBench/")
    tasks_dir: Path | None = Field(None, description="folder of problem files for the 'dir' source")
    sizes: dict[str, int | float] = Field(default_factory=dict,
                                          description="module-level size constant overrides")
    max_task_memory_fraction: float = Field(
        0.5, gt=0, le=1, description="refuse tasks needing more than this share of free memory")

    # Evaluation
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mode: Literal["eager", "compile"] = Field("eager", description="baseline to compare against")
    compile_mode: str = Field("default", description="torch.compile mode of the compile baseline")
    timer: str | None = Field(None, description="timing backend; default depends on the device")
    seed: int = 42
    correctness_trials: int = Field(5, ge=1)
    tolerances: dict[str, Tolerance] = Field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    timeout_s: float = Field(300.0, gt=0, description="wall-time limit per candidate")
    memory_limit_mb: int = Field(8192, gt=0, description="memory limit per candidate process")
    output_tail_chars: int = Field(10000, ge=0, description="candidate output kept in error texts")
    sandbox: Literal["auto", "required", "off"] = Field(
        "auto", description="namespaces: no network, read-only files but scratch")
    max_processes: int = Field(256, ge=1, description="processes and threads per candidate")

    # Timing (adaptive: stop when the 95% CI is tight, or at a cap)
    warmup_trials: int = Field(3, ge=0)
    min_trials: int = Field(10, ge=2)
    max_trials: int = Field(1000, ge=2)
    target_rel_ci: float = Field(
        0.01, gt=0, description="stop when the median's 95% CI half-width / median is below this")
    max_timing_s: float = Field(2.0, gt=0, description="time cap of one timing measurement")

    speedup_flag_threshold: float = Field(
        10.0, gt=1, description="speedups above this are flagged and re-measured side by side")

    # Agent: LLM, search, run (names as in the KernelBench agent framework)
    model_name: str = Field("replay/builtin", description="provider/model")
    server_type: str | None = Field(None, description="provider for a model_name without one")
    strategy: str = Field("tree", description="search strategy (plugins add more)")
    num_samples: int = Field(4, ge=1, description="candidates per phase and task")
    num_phases: int = Field(3, ge=1, description="phases of the tree search")
    max_fix_attempts: int = Field(2, ge=0, description="fix prompts after a failed candidate")
    num_branches: int = Field(4, ge=1, description="seeds carried into the next phase")
    query_budget: int = Field(300, ge=1, description="LLM calls per task (strategy=budget)")
    num_workers: int = Field(1, ge=1, description="concurrent LLM calls")
    api_query_interval: float = Field(0.0, ge=0, description="minimum seconds between calls")
    temperature: float = Field(0.8, ge=0)
    max_tokens: int = Field(30000, ge=1, description="completion tokens per call")
    llm_timeout_s: float = Field(600.0, gt=0, description="time limit of one LLM call")
    max_retries: int = Field(5, ge=0, description="retries of a failed call (429, 5xx, ...)")
    retry_base_s: float = Field(1.0, ge=0, description="first retry delay; doubles each time")
    max_calls: int | None = Field(None, ge=1, description="budget: LLM calls in the run")
    max_total_tokens: int | None = Field(None, ge=1, description="budget: tokens in the run")
    max_cost_usd: float | None = Field(None, gt=0, description="budget: dollars in the run")
    prices: dict[str, list[float]] = Field(
        default_factory=dict, description="USD per million tokens [in, out] by model prefix")
    eval_workers: int = Field(1, ge=1, description="evaluations at once; they compile side by "
                              "side and take turns on the device")
    device_lock: bool = Field(True, description="one evaluation at a time measures per device")
    baselines: list[Literal["eager", "compile"]] = Field(
        default_factory=lambda: ["eager", "compile"], description="baselines in the summary")
    templates_dir: Path | None = Field(None, description="prompt templates overriding ours")
    replay_path: Path | None = Field(None, description="transcript or run dir for replay/")
    data_dir: Path = Field(Path("."), description="run_dir defaults to data_dir/runs/<time>")
    run_dir: Path | None = None
    dry_run: bool = Field(False, description="render prompts and plan; spend nothing")
    worker_input_dir: Path | None = Field(None, description="shared-directory eval queue (in)")
    worker_output_dir: Path | None = Field(None, description="shared-directory eval queue (out)")
    lease_s: float = Field(60.0, gt=0, description="a worker's claim expires unrenewed after this")
    max_attempts: int = Field(3, ge=1, description="claims without a result before a job fails")
    queue_wait_s: float = Field(86400.0, gt=0, description="how long a client waits for a result")
    worker_poll_s: float = Field(0.5, gt=0, description="polling interval where inotify is absent")

    cache_dir: Path = Field(default_factory=lambda: _default_cache_dir())
    baseline_cache: bool = Field(True, description="reuse measured baselines")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kbtool"


def user_config_path() -> Path:
    if "KBTOOL_CONFIG" in os.environ:
        return Path(os.environ["KBTOOL_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "kbtool" / "config.yaml"


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


def _suggest(key: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(key, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (valid keys: {', '.join(sorted(choices))})"


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head not in Config.model_fields:
        raise KbtoolError(f"unknown config key {head!r}{_suggest(head, list(Config.model_fields))}")
    if not rest:
        data[head] = value
        return
    node = data.setdefault(head, {})
    parts = rest.split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict):
            raise KbtoolError(f"config key {key!r}: {head!r} has no sub-keys")
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise KbtoolError(f"config key {key!r}: {head!r} has no sub-keys")
    node[parts[-1]] = value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise KbtoolError(f"config file not found: {path}")
    try:
        data = _yaml(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise KbtoolError(f"config file {path} is not valid YAML: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise KbtoolError(f"config file {path} must hold a mapping of keys to values")
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _format_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        top = str(err["loc"][0])
        sub = Tolerance.model_fields if top == "tolerances" else Config.model_fields
        return f"unknown config key {loc!r}{_suggest(str(err['loc'][-1]), list(sub))}"
    return f"config key {loc!r}: {err['msg']} (got {err.get('input')!r})"


def load_config(
    overrides: dict[str, Any] | None = None,
    config_file: Path | None = None,
    profile: str | None = None,
) -> Config:
    """Resolve the configuration from every layer; raise KbtoolError on any bad key or value."""
    layers: list[dict[str, Any]] = []
    profiles: dict[str, dict[str, Any]] = dict(BUILTIN_PROFILES)
    candidates = [user_config_path(), Path.cwd() / "kbtool.yaml"]
    paths = [p for p in candidates if p.is_file()] + ([config_file] if config_file else [])
    for path in paths:
        data = _read_yaml(path)
        file_profiles = data.pop("profiles", {}) or {}
        if not isinstance(file_profiles, dict):
            raise KbtoolError(f"config file {path}: 'profiles' must map names to settings")
        profiles.update(file_profiles)
        layers.append(data)
    overrides = dict(overrides or {})
    profile = overrides.pop("profile", None) or profile
    if profile is not None:
        if profile not in profiles:
            raise KbtoolError(f"unknown config profile {profile!r}{_suggest(profile, list(profiles))}")
        layers.append(profiles[profile])
    cli: dict[str, Any] = {}
    for key, value in overrides.items():
        _set_dotted(cli, key, value)
    layers.append(cli)

    merged: dict[str, Any] = {}
    for layer in layers:
        for key in layer:
            if key not in Config.model_fields:
                raise KbtoolError(f"unknown config key {key!r}{_suggest(key, list(Config.model_fields))}")
        merged = _merge(merged, layer)
    if "tolerances" in merged:  # partial tolerance overrides keep the other dtypes' defaults
        tol = {k: v.model_dump() for k, v in DEFAULT_TOLERANCES.items()}
        merged["tolerances"] = _merge(tol, merged["tolerances"])
    try:
        return Config(**merged)
    except ValidationError as exc:
        raise KbtoolError(_format_error(exc)) from None


def config_as_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
