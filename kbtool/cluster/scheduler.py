"""Batch schedulers, small core: site profiles (model, validation, loading) and job scripts.

A *site profile* names a machine's scheduler, container engine, GPU generation and the
directives its jobs need (account, partition, QoS, constraint, GPUs, CPUs).  Profiles come
from plugins (``register_site_profiles``: the built-in ones are ``hpc/*.yaml``), from the
user's config dir (``$XDG_CONFIG_HOME/kbtool/profiles/*.yaml``, which win over plugins), or
from a path given as ``--profile FILE.yaml``.  Job scripts are rendered from
``templates/slurm_*.sh`` (``{{ name }}`` placeholders).  The Slurm commands themselves
(sbatch, status, cancel) live in ``plugins/slurm.py``.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kbtool.config import Config
from kbtool.errors import KbtoolError, UsageError

DIRECTIVE_KEYS = ("account", "partition", "qos", "constraint", "time", "gpus_per_node",
                  "cpus_per_task", "mem")
_TIME = re.compile(r"^(\d+-)?\d{1,2}(:\d{2}){0,2}$|^\d+$")


class Directives(BaseModel):
    model_config = ConfigDict(extra="forbid")

    account: str | None = None
    partition: str | None = None
    qos: str | None = None
    constraint: str | None = None
    time: str = "01:00:00"
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_task: int = Field(1, ge=1)
    mem: str | None = None


class SiteProfile(BaseModel):
    """One site: where jobs go and how workers run there."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    scheduler: str = Field("slurm", description="a registered scheduler, or none")
    engine: str = "local"
    arch: str = "cpu"
    image: str | None = None
    gpu_request: Literal["gpus-per-node", "gres", "none"] = "gpus-per-node"
    gres_type: str | None = None          # gres=gpu:<type>:N (Lawrencium: H100)
    min_cpus_per_gpu: int = Field(0, ge=0)
    account_pattern: str | None = None    # a regex the account must match (GPU jobs)
    account_hint: str = ""
    defaults: Directives = Field(default_factory=Directives)
    run_defaults: dict[str, str] = Field(default_factory=dict)  # the agent's CPU job
    choices: dict[str, list[str]] = Field(default_factory=dict)  # allowed values per directive
    env: dict[str, str] = Field(default_factory=dict)
    modules: list[str] = Field(default_factory=list)
    scratch: str | None = None
    source: str = ""                      # where it was loaded from (filled in by kbtool)

    @model_validator(mode="after")
    def _check(self) -> SiteProfile:
        from kbtool.cluster.containers import cuda_arch_list

        try:
            cuda_arch_list(self.arch)
        except KbtoolError as exc:
            raise ValueError(str(exc)) from None
        bad = sorted(set(self.choices) - set(DIRECTIVE_KEYS))
        if bad:
            raise ValueError(f"choices for unknown directive(s) {', '.join(bad)} "
                             f"(known: {', '.join(DIRECTIVE_KEYS)})")
        if self.gpu_request == "gres" and not self.gres_type:
            raise ValueError("gpu_request 'gres' needs gres_type (e.g. H100)")
        bad = sorted(set(self.run_defaults) - set(DIRECTIVE_KEYS))
        if bad:
            raise ValueError(f"run_defaults for unknown directive(s) {', '.join(bad)}")
        if self.account_pattern is not None:
            re.compile(self.account_pattern)
        return self


# --- loading ------------------------------------------------------------------------------

def user_profiles_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "kbtool" / "profiles"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read profile {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"profile {path} is not a YAML mapping")
    return data


def _format(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


def make_profile(data: dict[str, Any] | Path | str, name: str | None = None,
                 source: str = "") -> SiteProfile:
    """Validate a mapping (or a YAML file) into a profile; errors are one line."""
    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = _read(Path(data))
    data = dict(data)
    if name is not None:
        data.setdefault("name", name)
    data.setdefault("name", Path(source).stem if source else "unnamed")
    data["source"] = source
    try:
        return SiteProfile.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"invalid site profile {data.get('name')!r} ({source}): "
                          f"{_format(exc)}") from None


def available_profiles() -> dict[str, Any]:
    """``{name: mapping-or-path}``: plugins first, then the user's dir (which wins)."""
    from kbtool.plugin import registry

    found: dict[str, Any] = registry.SITE_PROFILES.all()
    user_dir = user_profiles_dir()
    if user_dir.is_dir():
        for path in sorted(user_dir.glob("*.y*ml")):
            found[_read(path).get("name", path.stem)] = path
    return found


def load_profile(name_or_path: str) -> SiteProfile:
    """A profile by name, or from a YAML file when given a path."""
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        if not path.is_file():
            raise UsageError(f"profile file not found: {name_or_path}")
        return make_profile(path)
    found = available_profiles()
    if name_or_path not in found:
        raise UsageError(f"unknown site profile {name_or_path!r} (known: "
                          f"{', '.join(sorted(found)) or 'none'}; or give a path to a YAML file)")
    thing = found[name_or_path]
    if isinstance(thing, SiteProfile):
        return thing
    source = str(thing) if isinstance(thing, (str, Path)) else "plugin"
    return make_profile(thing, name=name_or_path, source=source)


# --- options -----------------------------------------------------------------------------

# key=value options of `kbtool submit`; anything else must be a kbtool config key and is
# passed on to the job's kbtool command.
SUBMIT_KEYS = {*DIRECTIVE_KEYS, "gpus", "array", "job_name", "log_dir", "python", "workdir",
               "image", "idle_exit", "max_jobs", "workers"}


def split_options(args: list[str]) -> tuple[list[str], dict[str, str], list[str]]:
    """``words``, scheduler options (raw text) and kbtool settings (``key=value`` strings)."""
    words: list[str] = []
    options: dict[str, str] = {}
    settings: list[str] = []
    config_keys = set(Config.model_fields)
    for arg in args:
        key, sep, value = arg.partition("=")
        if not (sep and key and not key.startswith("-") and "/" not in key):
            words.append(arg)
        elif key in SUBMIT_KEYS:
            options[key] = value
        elif key.split(".")[0] in config_keys:
            settings.append(arg)
        else:
            raise UsageError(f"unknown option {key!r} (scheduler options: "
                              f"{', '.join(sorted(SUBMIT_KEYS))}; or a kbtool config key)")
    return words, options, settings


def _int(options: dict[str, str], key: str, default: int, low: int = 0) -> int:
    if key not in options:
        return default
    try:
        value = int(options[key])
    except ValueError:
        raise UsageError(f"{key}={options[key]!r}: expected a whole number") from None
    if value < low:
        raise UsageError(f"{key}={value}: must be at least {low}")
    return value


def resolve_directives(profile: SiteProfile, options: dict[str, str], gpu_job: bool = True
                       ) -> Directives:
    """The profile's defaults overridden by the user's options, checked against the site."""
    d = profile.defaults.model_copy()
    for key in ("account", "partition", "qos", "constraint", "time", "mem"):
        if key in options:
            setattr(d, key, options[key] or None)
    gpus = options.get("gpus", options.get("gpus_per_node"))
    d.gpus_per_node = _int({"g": gpus} if gpus is not None else {}, "g", d.gpus_per_node)
    d.cpus_per_task = _int(options, "cpus_per_task", d.cpus_per_task, low=1)
    if not gpu_job:
        d.gpus_per_node = 0
    for key, allowed in profile.choices.items():
        value = getattr(d, key)
        if value is not None and str(value) not in allowed:
            raise UsageError(f"profile {profile.name!r}: {key}={value!r} is not allowed "
                              f"(choices: {', '.join(allowed)})")
    if d.time and not _TIME.match(d.time):
        raise UsageError(f"time={d.time!r}: expected [D-]HH:MM:SS, MM:SS or minutes")
    if profile.scheduler == "slurm" and gpu_job and profile.account_pattern:
        if not d.account:
            raise UsageError(f"profile {profile.name!r} needs account=... "
                              f"{profile.account_hint}".rstrip())
        if not re.fullmatch(profile.account_pattern, d.account):
            raise UsageError(f"profile {profile.name!r}: account={d.account!r} does not match "
                              f"{profile.account_pattern!r} {profile.account_hint}".rstrip())
    if gpu_job and profile.min_cpus_per_gpu and d.gpus_per_node:
        need = profile.min_cpus_per_gpu * d.gpus_per_node
        if d.cpus_per_task < need:
            raise UsageError(f"profile {profile.name!r}: cpus_per_task={d.cpus_per_task} is too "
                              f"few for {d.gpus_per_node} GPUs; the scheduler wants at least "
                              f"{profile.min_cpus_per_gpu} CPUs per GPU (cpus_per_task={need})")
    return d


def directive_lines(profile: SiteProfile, d: Directives, job_name: str, output: str,
                    array: int | None = None) -> list[str]:
    lines = [f"--job-name={job_name}", f"--output={output}"]
    for key, flag in (("account", "account"), ("partition", "partition"), ("qos", "qos"),
                      ("constraint", "constraint"), ("time", "time"), ("mem", "mem")):
        value = getattr(d, key)
        if value:
            lines.append(f"--{flag}={value}")
    lines += ["--nodes=1", "--ntasks=1", f"--cpus-per-task={d.cpus_per_task}"]
    if d.gpus_per_node and profile.gpu_request == "gpus-per-node":
        lines.append(f"--gpus-per-node={d.gpus_per_node}")
    elif d.gpus_per_node and profile.gpu_request == "gres":
        lines.append(f"--gres=gpu:{profile.gres_type}:{d.gpus_per_node}")
    if array is not None:
        lines.append(f"--array=0-{array - 1}")
    return [f"#SBATCH {shlex.quote(line) if ' ' in line else line}" for line in lines]


# --- rendering -----------------------------------------------------------------------------

def template_text(name: str) -> str:
    import kbtool_templates

    return (Path(kbtool_templates.__file__).parent / name).read_text()


def render(template: str, values: dict[str, str]) -> str:
    def sub(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise UsageError(f"job template uses an unknown placeholder {{{{ {key} }}}}")
        return values[key]

    return re.sub(r"\{\{\s*(\w+)\s*\}\}", sub, template)


def _setup_lines(profile: SiteProfile, python: str) -> str:
    lines = [f"module load {shlex.quote(m)}" for m in profile.modules]
    env = dict(profile.env)
    if profile.scratch:
        env.setdefault("KBTOOL_SCRATCH", profile.scratch)
    lines += [f"export {k}={_q(v)}" for k, v in env.items()]
    lines.append(f"PYTHON={shlex.quote(python)}")
    return "\n".join(lines)


def _q(value: str) -> str:
    """Quote for bash but keep $VARS expandable (profiles use $SCRATCH, $USER)."""
    if re.fullmatch(r"[\w@%+=:,./${}-]*", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _common(profile: SiteProfile, options: dict[str, str], kind: str) -> dict[str, str]:
    name = options.get("job_name") or f"kbtool-{kind}-{profile.name}"
    if not name.startswith("kbtool-"):
        name = f"kbtool-{kind}-{name}"
    log_dir = Path(options.get("log_dir") or "kbtool-logs").expanduser()
    workdir = options.get("workdir") or os.getcwd()
    return {"job_name": name, "log_dir": str(log_dir if log_dir.is_absolute()
                                             else Path(workdir) / log_dir),
            "workdir": workdir, "python": options.get("python") or sys.executable}


def render_workers(profile: SiteProfile, options: dict[str, str], settings: list[str]
                   ) -> tuple[str, dict[str, Any]]:
    """The worker-pool job script (a job array: one task per node, one worker per GPU)."""
    d = resolve_directives(profile, options)
    c = _common(profile, options, "workers")
    array = _int(options, "array", 1, low=1)
    keys = {s.partition("=")[0] for s in settings}
    if not {"worker_input_dir", "worker_output_dir"} <= keys:
        raise UsageError("submit workers needs worker_input_dir=IN and worker_output_dir=OUT "
                          "(a queue on a filesystem the nodes share)")
    settings = [_abs_setting(s, c["workdir"]) for s in settings]
    gpu = profile.arch.lower() != "cpu" and d.gpus_per_node > 0
    workers = d.gpus_per_node if gpu else _int(options, "workers", 1, low=1)
    serve_opts = []
    if "idle_exit" in options:
        serve_opts += ["--idle-exit", options["idle_exit"]]
    if "max_jobs" in options:
        serve_opts += ["--max-jobs", options["max_jobs"]]
    if profile.engine == "local" and not gpu:
        cmd = ['"$PYTHON"', "-m", "kbtool", "worker", "serve"]
    else:
        cmd = ['"$PYTHON"', "-m", "kbtool", "worker", "start", "--engine", profile.engine,
               "--arch", profile.arch]
        image = options.get("image") or profile.image
        if image:
            cmd += ["--image", _q(image)]
        if profile.scratch:
            cmd += ["--scratch", _q(profile.scratch)]
        if gpu:
            cmd += ["--gpu-index", '"$i"']
    cmd += serve_opts + [shlex.quote(s) for s in settings]
    output = f"{c['log_dir']}/%x-%A_%a.out"
    values = {
        "directives": "\n".join(directive_lines(profile, d, c["job_name"], output, array)),
        "profile": profile.name, "setup": _setup_lines(profile, c["python"]),
        "workdir": shlex.quote(c["workdir"]), "workers": str(workers),
        "worker_command": " ".join(cmd),
    }
    meta = {"kind": "workers", "name": c["job_name"], "profile": profile.name,
            "log": output, "log_dir": c["log_dir"], "array": array}
    return render(template_text("slurm_workers.sh"), values), meta


def render_run(profile: SiteProfile, options: dict[str, str], words: list[str],
               settings: list[str]) -> tuple[str, dict[str, Any]]:
    """The agent's job script (`kbtool run ...` on one CPU node)."""
    options = {**profile.run_defaults, **options}
    d = resolve_directives(profile, options, gpu_job=False)
    c = _common(profile, options, "run")
    args = [shlex.quote(w) for w in words] + [shlex.quote(_abs_setting(s, c["workdir"]))
                                              for s in settings]
    output = f"{c['log_dir']}/%x-%j.out"
    values = {
        "directives": "\n".join(directive_lines(profile, d, c["job_name"], output)),
        "profile": profile.name, "setup": _setup_lines(profile, c["python"]),
        "workdir": shlex.quote(c["workdir"]),
        "run_command": " ".join(['"$PYTHON"', "-m", "kbtool", "run", *args]),
    }
    meta = {"kind": "run", "name": c["job_name"], "profile": profile.name, "log": output,
            "log_dir": c["log_dir"], "array": None}
    return render(template_text("slurm_run.sh"), values), meta


def _abs_setting(setting: str, workdir: str) -> str:
    key, _, value = setting.partition("=")
    if key in {"worker_input_dir", "worker_output_dir", "cache_dir", "run_dir"} and value:
        path = Path(value).expanduser()
        if not path.is_absolute() and "$" not in value:
            return f"{key}={Path(workdir) / path}"
    return setting
