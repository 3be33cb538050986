"""The ``kernelbench`` task kind: a reference ``Model`` and a candidate ``ModelNew``.

Every function here runs inside an isolated child (see ``kbtool.isolation``).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kbtool.config import DEFAULT_TOLERANCES, Config
from kbtool.hookspecs import hookimpl
from kbtool.isolation import Reporter
from kbtool.problem import (
    apply_sizes,
    available_memory_bytes,
    estimate_bytes,
    load_module,
    size_constants,
)
from kbtool.task import Task, TaskRefused
from kbtool.timing import Timer, TimingSettings

# Copies alive at once while checking: reference and candidate parameters, inputs and a
# clone for each model, both models' outputs.
_PARAM_COPIES, _INPUT_COPIES, _OUTPUT_COPIES = 2, 3, 2


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def problem_source(task: Task, config: Config) -> str:
    assert task.path is not None
    return apply_sizes(task.path.read_text(), config.sizes, filename=str(task.path))


def _flatten(obj: Any) -> list[Any]:
    import torch

    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _flatten(item)]
    if isinstance(obj, (int, float, bool)):
        return [torch.tensor(obj)]
    raise TypeError(f"output of type {type(obj).__name__} is not a tensor or a tuple of tensors")


def _to_device(values: list[Any], device: str) -> list[Any]:
    import torch

    return [v.to(device) if isinstance(v, torch.Tensor) else v for v in values]


def _clone(values: list[Any]) -> list[Any]:
    import torch

    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def compare_outputs(ref: Any, new: Any, config: Config) -> tuple[str | None, list[float | None]]:
    """Return (why it is incorrect or None, per-output max abs difference)."""
    import torch

    ref_t, new_t = _flatten(ref), _flatten(new)
    if len(ref_t) != len(new_t):
        return f"candidate returned {len(new_t)} outputs, reference {len(ref_t)}", []
    diffs: list[float | None] = []
    problem = None
    for i, (r, n) in enumerate(zip(ref_t, new_t, strict=False)):
        if r.shape != n.shape:
            return f"output {i}: shape {tuple(n.shape)}, expected {tuple(r.shape)}", diffs
        if r.dtype != n.dtype:
            return f"output {i}: dtype {n.dtype}, expected {r.dtype}", diffs
        r64, n64 = r.detach().to("cpu", torch.float64), n.detach().to("cpu", torch.float64)
        both_nan = torch.isnan(r64) & torch.isnan(n64)
        diff = (r64 - n64).abs().masked_fill(both_nan, 0.0)
        worst = float(diff.max()) if diff.numel() else 0.0
        diffs.append(worst if worst == worst and worst != float("inf") else None)
        if r.is_floating_point() or r.is_complex():
            tol = config.tolerances.get(str(r.dtype).replace("torch.", ""),
                                        DEFAULT_TOLERANCES["float32"])
            bad = ~(diff <= tol.atol + tol.rtol * r64.abs())
            bad &= ~both_nan
            if problem is None and bool(bad.any()):
                problem = (f"output {i}: {int(bad.sum())} of {r.numel()} values differ "
                           f"beyond atol={tol.atol:g}, rtol={tol.rtol:g} (max abs diff "
                           f"{worst:.3g})")
        elif problem is None and worst != 0.0:
            problem = f"output {i}: values differ (max abs diff {worst:.3g}); exact match needed"
    return problem, diffs


class KernelBenchKind:
    """Check a ``ModelNew`` against the reference ``Model`` of a KernelBench problem."""

    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        source = problem_source(task, config)
        module = load_module(source, "kbtool_reference", str(task.path))
        est = estimate_bytes(module)
        needed = (_PARAM_COPIES * est["param_bytes"] + _INPUT_COPIES * est["input_bytes"]
                  + _OUTPUT_COPIES * est["output_bytes"])
        allowed = min(available_memory_bytes() * config.max_task_memory_fraction,
                      config.memory_limit_mb * 1024 * 1024)
        constants = size_constants(source)
        if needed > allowed:
            raise TaskRefused(
                f"task {task.id} needs about {_gb(needed)} for its tensors (inputs "
                f"{_gb(est['input_bytes'])}, parameters {_gb(est['param_bytes'])}, outputs "
                f"{_gb(est['output_bytes'])}), more than the {_gb(allowed)} allowed here; "
                f"shrink it with --size NAME=VALUE (its constants: "
                f"{', '.join(f'{k}={v}' for k, v in constants.items()) or 'none'})")
        return {"sizes": constants, "needed_bytes": needed, **est}

    def _build(self, task: Task, config: Config, factory_name: str, module: Any,
               ref_module: Any) -> Any:
        import torch

        torch.manual_seed(config.seed)
        return getattr(module, factory_name)(*ref_module.get_init_inputs()).to(config.device)

    def _inputs(self, module: Any, seed: int, device: str) -> list[Any]:
        import torch

        torch.manual_seed(seed)
        return _to_device(list(module.get_inputs()), device)

    def baseline(self, task: Task, config: Config, mode: str, timer: Timer,
                 report: Reporter) -> dict[str, Any]:
        import torch

        report.stage("load")
        ref_module = load_module(problem_source(task, config), "kbtool_reference", str(task.path))
        model = self._build(task, config, "Model", ref_module, ref_module)
        if mode == "compile":
            model = torch.compile(model, mode=config.compile_mode)
        inputs = self._inputs(ref_module, config.seed + 10_000, config.device)
        with torch.no_grad():
            model(*inputs)  # compiles under mode=compile; never timed
            report.stage("timing")
            timer.setup(config.device)
            stats = timer.measure(lambda: model(*inputs), TimingSettings.from_config(config))
        return {"timing": stats.model_dump()}

    def check(self, task: Task, solution: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        import torch

        if config.device == "cpu":
            os.environ["TRITON_INTERPRET"] = "1"  # Triton candidates run on its interpreter
        report.stage("load")
        ref_module = load_module(problem_source(task, config), "kbtool_reference", str(task.path))
        ref = self._build(task, config, "Model", ref_module, ref_module)
        try:
            candidate = load_module(solution.read_text(), "kbtool_candidate", str(solution))
            if not isinstance(getattr(candidate, "ModelNew", None), type):
                return {"status": "compile_error",
                        "error": f"{solution.name} defines no class ModelNew"}
            new = self._build(task, config, "ModelNew", candidate, ref_module)
        except BaseException:
            return {"status": "compile_error", "error": candidate_trace(solution)}

        report.stage("correctness")
        worst: list[float | None] = []
        try:
            with torch.no_grad():
                for trial in range(config.correctness_trials):
                    inputs = self._inputs(ref_module, config.seed + 1 + trial, config.device)
                    expected = ref(*_clone(inputs))
                    got = new(*_clone(inputs))
                    problem, diffs = compare_outputs(expected, got, config)
                    worst = _merge_worst(worst, diffs)
                    if problem:
                        return {"status": "incorrect", "max_abs_diff": worst,
                                "correctness_trials": trial + 1,
                                "error": f"trial {trial + 1}: {problem}"}
        except BaseException:
            return {"status": "runtime_error", "error": candidate_trace(solution),
                    "max_abs_diff": worst}

        report.stage("timing")
        try:
            inputs = self._inputs(ref_module, config.seed + 10_000, config.device)
            timer.setup(config.device)
            with torch.no_grad():
                stats = timer.measure(lambda: new(*inputs), TimingSettings.from_config(config))
        except BaseException:
            return {"status": "runtime_error", "error": candidate_trace(solution),
                    "max_abs_diff": worst, "correctness_trials": config.correctness_trials}
        return {"status": "ok", "correct": True, "max_abs_diff": worst,
                "correctness_trials": config.correctness_trials, "timing": stats.model_dump()}


def candidate_trace(solution: Path) -> str:
    """The current exception's traceback from the candidate's first frame on (kbtool's own
    frames above it only add noise); the whole traceback when no frame is the candidate's."""
    exc = sys.exc_info()[1]
    assert exc is not None
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if f.filename == str(solution)), None)
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    if first is None:
        return traceback.format_exc()
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames[first:]),
             *traceback.format_exception_only(type(exc), exc)]
    return "".join(lines)


def _merge_worst(worst: list[float | None], diffs: list[float | None]) -> list[float | None]:
    if not worst:
        return list(diffs)
    return [None if a is None or b is None else max(a, b) for a, b in zip(worst, diffs, strict=False)]


@hookimpl
def register_task_kinds(register: Callable[[str, Any], None]) -> None:
    register("kernelbench", KernelBenchKind())
