"""The configuration model: one pydantic model for the core's keys, plus one *section* per
task kind that has settings of its own (``kernelbench:``: tolerances, size overrides, ...).

A section is a :class:`Section` subclass that a task kind names as its ``settings_model``;
its values live in ``Config.sections[<section name>]`` and are read, typed, with
``config.section(KernelBenchSettings)``.  Keys a section lists in ``flat_keys`` are also
accepted at the top level (``sizes.N=256`` as well as ``kernelbench.sizes.N=256``): the
names users had before sections existed keep working.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kbtool.util.dirs import cache_dir

S = TypeVar("S", bound="Section")


class Section(BaseModel):
    """Base class of a task kind's settings section."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: ClassVar[str] = ""                   # the section's key: ``kernelbench``
    flat_keys: ClassVar[tuple[str, ...]] = ()  # also accepted at the top level
    # Keys that change neither verdicts nor numbers (where tasks are found): they do not
    # travel with jobs or key the evaluation cache.
    local_keys: ClassVar[tuple[str, ...]] = ()


# Core settings that change an evaluation's verdict or numbers: with every section's
# settings (but its ``local_keys``) they key the search's evaluation cache and travel with
# every job sent to a worker.
EVAL_KEYS = ("device", "mode", "timer", "seed", "warmup_trials", "min_trials", "max_trials",
             "target_rel_ci", "max_timing_s", "timeout_s", "memory_limit_mb",
             "speedup_flag_threshold", "sandbox", "speedup_from", "baselines")

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
    dataset: str | None = Field(None, description="the hf source's data set: a hub name (from "
                                "the local cache), a folder, or data files (docs/datasets.md)")
    dataset_split: str | None = Field(None, description="the hf source's split (default: all)")
    dataset_kind: str | None = Field(None, description="the task kind of the data set's rows "
                                     "(default: the one kind whose columns they have)")
    max_items: int | None = Field(None, ge=1, description="at most this many of the selected "
                                  "tasks, the first ones (a short run to try a setup)")

    # Evaluation
    device: Literal["auto", "cpu", "cuda"] = "auto"
    mode: str | None = Field(None, description="the baseline speedups are against (the task "
                             "kind's first baseline when unset: eager for KernelBench)")
    timer: str | None = Field(None, description="timing backend; default depends on the device")
    seed: int = 42
    timeout_s: float = Field(300.0, gt=0, description="wall-time limit per candidate")
    memory_limit_mb: int = Field(8192, gt=0, description="memory limit per candidate process")
    output_tail_chars: int = Field(10000, ge=0, description="candidate output kept in error texts")
    sandbox: Literal["auto", "required", "off"] = Field(
        "auto", description="namespaces: no network, read-only files but scratch")
    max_processes: int = Field(256, ge=1, description="processes and threads per candidate")
    eval_backend: str = Field("auto", description="where candidates are evaluated: local, "
                              "queue (worker_input_dir/worker_output_dir), or a plugin's; auto "
                              "picks queue when the worker dirs are set")

    # Timing (adaptive: stop when the 95% CI is tight, or at a cap)
    warmup_trials: int = Field(3, ge=0)
    min_trials: int = Field(10, ge=2)
    max_trials: int = Field(1000, ge=2)
    target_rel_ci: float = Field(
        0.01, gt=0, description="stop when the median's 95% CI half-width / median is below this")
    max_timing_s: float = Field(2.0, gt=0, description="time cap of one timing measurement")

    speedup_flag_threshold: float = Field(
        10.0, gt=1, description="speedups above this are flagged and re-measured side by side")
    speedup_from: Literal["paired", "cached"] = Field(
        "paired", description="paired: reference and candidate timed in alternation, the "
        "speedup with its interval; cached: against the cached baseline (said in the result)")

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
    llm_base_url: str | None = Field(None, description="the OpenAI-compatible server's URL "
                                     "(over the provider's environment variable)")

    # LLM serving: `kbtool serve MODEL`, and `kbtool run ... autorun=true` (docs/serving.md)
    autorun: bool = Field(False, description="kbtool run starts one server per GPU of gpu_ids "
                          "for model_name's model, routes each task to one, stops them at the end")
    gpu_ids: list[int] = Field(default_factory=lambda: [0], min_length=1,
                               description="GPUs to serve on, one server each (gpu_ids=0,1)")
    base_port: int = Field(3117, ge=1, le=65535, description="server i listens on base_port + GPU")
    serve_command: str = Field(
        "vllm serve {model} --host {host} --port {port}",
        description="a server's command; {model}, {port}, {host}, {gpu} are filled in")
    serve_timeout_s: float = Field(600.0, gt=0, description="wait this long for GET /health")
    serve_log_dir: Path | None = Field(None, description="server logs (gpu<G>.log); default: "
                                       "RUN_DIR/serve, or data_dir/serve for kbtool serve")
    eval_workers: int = Field(1, ge=1, description="evaluations at once; they compile side by "
                              "side and take turns on the device")
    device_lock: bool = Field(True, description="one evaluation at a time measures per device")
    baselines: list[str] | None = Field(
        None, description="baselines timed for the summary (default: all of the task kind's)")
    templates_dir: Path | None = Field(None, description="prompt templates overriding ours")
    replay_path: Path | None = Field(None, description="transcript or run dir for replay/")
    data_dir: Path = Field(Path("."), description="run_dir defaults to data_dir/runs/<time>")
    run_dir: Path | None = None
    dry_run: bool = Field(False, description="render prompts and plan; spend nothing")
    progress_interval_s: float = Field(30.0, gt=0, description="kbtool run without a terminal: "
                                       "a progress line at least this often")
    worker_input_dir: Path | None = Field(None, description="shared-directory eval queue (in)")
    worker_output_dir: Path | None = Field(None, description="shared-directory eval queue (out)")
    lease_s: float = Field(60.0, gt=0, description="a worker's claim expires unrenewed after this")
    max_attempts: int = Field(3, ge=1, description="claims without a result before a job fails")
    queue_wait_s: float = Field(86400.0, gt=0, description="how long a client waits for a result")
    worker_poll_s: float = Field(0.5, gt=0, description="polling interval where inotify is absent")
    sandbox_url: str | None = Field(None, description="a remote evaluation service "
                                    "(eval_backend=restapi: a `kbtool sandbox serve`)")

    # Experiment trackers (docs/trackers.md)
    tracker: list[str] = Field(default_factory=list, description="experiment trackers a run "
                               "logs to: wandb, mlflow, or a plugin's (tracker=wandb,mlflow)")
    tracker_project: str = Field("kbtool", min_length=1, description="the trackers' project "
                                 "(W&B) or experiment (MLflow)")

    cache_dir: Path = Field(default_factory=cache_dir)
    baseline_cache: bool = Field(True, description="reuse measured baselines")

    # Task kinds' sections, by section name (validated by load_config; read with section()).
    sections: dict[str, dict[str, Any]] = Field(default_factory=dict, exclude=False)

    @field_validator("gpu_ids", "tracker", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        """``gpu_ids=0,1`` and ``tracker=wandb,mlflow`` (one word on the command line) and
        ``gpu_ids=0`` are lists too."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return [value] if isinstance(value, int) else value

    def section(self, model: type[S]) -> S:
        """The typed settings of one section (its defaults where nothing was set)."""
        return model.model_validate(self.sections.get(model.name, {}))

    def with_section(self, settings: Section) -> Config:
        """A copy of this config with one section replaced."""
        sections = {**self.sections, settings.name: settings.model_dump(mode="json")}
        return self.model_copy(update={"sections": sections})
