"""The ``kernelbench`` settings section, the task payload and the result details."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator

from kbtool.config import Section


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


class KernelBenchSettings(Section):
    """``kernelbench:`` in the config; every key is also accepted at the top level."""

    name: ClassVar[str] = "kernelbench"
    flat_keys: ClassVar[tuple[str, ...]] = (
        "kernelbench_path", "tasks_dir", "sizes", "max_task_memory_fraction", "compile_mode",
        "correctness_trials", "tolerances", "shrink", "shrink_max_mb", "shrink_max_gflop",
        "cuda_inputs", "process_margin", "cpu_threads")
    local_keys: ClassVar[tuple[str, ...]] = ("kernelbench_path", "tasks_dir")

    kernelbench_path: Path | None = Field(None, description="KernelBench checkout or its KernelBench/")
    tasks_dir: Path | None = Field(None, description="folder of problem files for the 'dir' source")
    sizes: dict[str, int | float] = Field(default_factory=dict,
                                          description="module-level size constant overrides")
    max_task_memory_fraction: float = Field(
        0.5, gt=0, le=1, description="refuse tasks needing more than this share of free memory")
    shrink: Literal["off", "auto"] = Field(
        "off", description="auto: scale each problem's size constants until it fits here")
    shrink_max_mb: float | None = Field(
        None, gt=0, description="shrink=auto: most MB of tensors a problem may need (default: "
                                "512 on a CPU, the memory limits alone on a GPU)")
    shrink_max_gflop: float | None = Field(
        None, gt=0, description="shrink=auto: most GFLOP per forward (default: 2 on a CPU, "
                                "none on a GPU)")
    cuda_inputs: Literal["refuse", "cpu"] = Field(
        "refuse", description="problems that put tensors on CUDA, on a machine without one: "
                              "refuse them, or map their devices to the CPU")
    compile_mode: str = Field("default", description="torch.compile mode of the compile baseline")
    cpu_threads: PositiveInt | Literal["auto"] = Field(
        1, description="threads of a CPU measurement: 1 (the default: the runners' CPU time "
        "is the clock, which other work on the machine does not stretch), N, or auto (the "
        "CPUs idle at the time, timed by the wall clock when more than one)")
    process_margin: float = Field(
        0.03, ge=0, lt=0.5, description="the speedup's interval is widened by this share on "
        "each side: the reference and the candidate run in two processes, and two processes "
        "running the very same code differ by a few percent (memory layout, CPU placement), "
        "which no number of rounds removes")
    correctness_trials: int = Field(5, ge=1)
    tolerances: dict[str, Tolerance] = Field(default_factory=lambda: dict(DEFAULT_TOLERANCES))

    @field_validator("tolerances", mode="before")
    @classmethod
    def _keep_other_dtypes(cls, value: Any) -> Any:
        """A partial override (``tolerances.float32.atol=1e-3``) keeps the other defaults."""
        if not isinstance(value, dict):
            return value
        merged: dict[str, Any] = {k: v.model_dump() for k, v in DEFAULT_TOLERANCES.items()}
        for dtype, tol in value.items():
            tol = tol.model_dump() if isinstance(tol, BaseModel) else tol
            merged[dtype] = {**merged.get(dtype, {}), **tol} if isinstance(tol, dict) else tol
        return merged

    @field_validator("sizes")
    @classmethod
    def _numbers(cls, value: dict[str, int | float]) -> dict[str, int | float]:
        for name, size in value.items():
            if isinstance(size, bool):
                raise ValueError(f"size {name}={size!r} must be a number")
        return value


class KernelBenchPayload(BaseModel):
    """A task's problem, inline: what a worker on another machine gets instead of a path."""

    model_config = ConfigDict(extra="forbid")
    problem: str | None = Field(None, description="the problem file's text")


class KernelBenchDetails(BaseModel):
    """What a KernelBench check adds to a result (top-level fields of ``kbtool eval --json``)."""

    model_config = ConfigDict(extra="forbid")
    max_abs_diff: list[float | None] = Field(default_factory=list,
                                             description="per output, worst trial")
    sizes: dict[str, Any] = Field(default_factory=dict, description="the size constants used")
    shrunk: dict[str, list[int | float]] = Field(
        default_factory=dict, description="shrink=auto: constants scaled, [from, to]")
