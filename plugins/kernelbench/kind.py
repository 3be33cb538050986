"""The ``kernelbench`` task kind: a reference ``Model`` and a candidate ``ModelNew``.

Every method here runs inside an isolated child (see ``kbtool.sandbox.isolation``).  The order of a
check is chosen against the published ways to fake a result (docs/integrity.md): static
findings first; the candidate runs *before* the reference on each trial, on its own copy of
fresh, differently distributed inputs; freed memory is overwritten between runs; inputs,
threads, output types and the identities of torch, timer and harness functions are checked
after every call; cached results are probed with new values in the same tensors; the
outputs are checked again after timing.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from kbtool.config import Config
from kbtool.errors import UsageError, unknown
from kbtool.evaluation.result import EvalResult
from kbtool.sandbox import devicelock
from kbtool.sandbox.isolation import Reporter
from kbtool.task.kind import TaskKind, fenced_blocks
from kbtool.task.model import Task, TaskRefused
from kbtool.timing.base import Timer, TimingSettings
from kbtool_plugins.kernelbench import guards
from kbtool_plugins.kernelbench.compare import compare_outputs, merge_worst
from kbtool_plugins.kernelbench.problem import (
    apply_sizes,
    available_memory_bytes,
    cuda_to_cpu,
    estimate,
    load_module,
    nbytes,
    size_constants,
    task_number,
    uses_cuda,
)
from kbtool_plugins.kernelbench.settings import (
    KernelBenchDetails,
    KernelBenchPayload,
    KernelBenchSettings,
)
from kbtool_plugins.kernelbench.shrink import Measure, shrink
from kbtool_plugins.kernelbench.static_checks import analyse

TEMPLATES = Path(str(importlib.resources.files("kbtool_templates"))) / "kernelbench"

# Copies alive at once while checking: reference and candidate parameters, inputs and a
# clone for each model, both models' outputs and largest intermediates, and the working
# copies of a comparison (it goes by chunks: kbtool_plugins.kernelbench.compare.CHUNK).
_PARAM_COPIES, _INPUT_COPIES, _OUTPUT_COPIES, _INTERMEDIATE_COPIES = 2, 3, 2, 2
_COMPARE_BYTES = 64 * 2**20
# shrink=auto on a CPU: what one problem may take (a level-1 batch then runs in minutes).
_CPU_SHRINK_MB, _CPU_SHRINK_GFLOP = 512.0, 2.0
_MODEL_NAME = re.compile(r"""^\s*model_name\s*=\s*["']([^"']+)["']""", re.MULTILINE)
# Input distributions, cycled over the correctness trials (trial 0 is the task's own).
VARIANTS = ("plain", "scaled", "spiky")
# Constants that name a batch dimension: a second shape is tried by changing one of them.
BATCH_NAMES = ("batch_size", "batch", "batch_dim", "bs")
TIMING_SEED, CACHE_SEED = 10_000, 20_000


def _gb(n: float, other: float | None = None) -> str:
    """Gigabytes, with the digits it takes to tell ``n`` from ``other``."""
    digits = 2
    while other is not None and digits < 6 and round(n / 1e9, digits) == round(other / 1e9, digits):
        digits += 1
    return f"{n / 1e9:.{digits}f} GB"


def needed_bytes(est: dict[str, Any]) -> int:
    """Memory a check needs at most, from a problem's estimate."""
    return int(_PARAM_COPIES * est["param_bytes"] + _INPUT_COPIES * est["input_bytes"]
               + _OUTPUT_COPIES * est["output_bytes"]
               + _INTERMEDIATE_COPIES * est["intermediate_bytes"]
               + min(_COMPARE_BYTES, 8 * est["output_bytes"]))


def settings(config: Config) -> KernelBenchSettings:
    return config.section(KernelBenchSettings)


def raw_source(task: Task) -> str:
    """The problem file's text, as written (inline in the payload, or at ``task.path``)."""
    inline = KernelBenchPayload.model_validate(task.payload).problem
    if inline is not None:
        return inline
    if task.path is None:
        raise TaskRefused(f"task {task.id} has neither a problem file nor its text")
    return task.path.read_text()


def problem_filename(task: Task) -> str:
    return str(task.path) if task.path is not None else f"<{task.id}>"


def problem_source(task: Task, config: Config, sizes: dict[str, int | float] | None = None) -> str:
    """The problem's text with the size overrides (``sizes``, else the settings') applied,
    and its CUDA devices mapped to the CPU where ``cuda_inputs=cpu`` says so."""
    own = settings(config)
    source = apply_sizes(raw_source(task), own.sizes if sizes is None else sizes,
                         filename=problem_filename(task))
    return cuda_to_cpu(source) if own.cuda_inputs == "cpu" else source


def why_not_loaded(task: Task, exc: BaseException) -> str:
    """One line on why a problem does not load here, with what to do about it."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    lower = str(exc).lower()
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return (f"task {task.id} needs the Python package {exc.name!r}, which is not installed "
                f"here (pip install {exc.name.split('.')[0]})")
    model = _MODEL_NAME.search(raw_source(task))
    if model and any(s in lower for s in ("huggingface", "offline", "can't load",
                                           "couldn't connect", "connection", "not found")):
        home = os.environ.get("HF_HOME", "~/.cache/huggingface")
        return (f"task {task.id} needs the Hugging Face model {model.group(1)!r} in the local "
                f"cache ({home}); fetch it where there is network: huggingface-cli download "
                f"{model.group(1)}")
    if "cuda" in lower or "nvidia" in lower:
        return (f"task {task.id} puts its tensors on CUDA and this machine has none "
                f"(cuda_inputs=cpu maps them to the CPU): {text}")
    return f"task {task.id} could not be loaded: {text}"


def make_inputs(module: Any, seed: int, device: str, variant: str = "plain") -> list[Any]:
    """``get_inputs()`` under ``seed``; floating inputs reshaped by ``variant`` so that a
    kernel which skips part of the data, or assumes one distribution, is seen."""
    import torch

    torch.manual_seed(seed)
    values = list(module.get_inputs())
    out = []
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point() and variant != "plain":
            if variant == "scaled":  # per-element magnitudes over ~two orders, signs kept
                value = value * torch.exp(0.75 * torch.randn_like(value))
            else:  # "spiky": 1% of the elements 8x larger
                value = torch.where(torch.rand_like(value) < 0.01, value * 8, value)
        out.append(value.to(device) if isinstance(value, torch.Tensor) else value)
    return out


def _clone(values: list[Any]) -> list[Any]:
    import torch

    return [v.clone() if isinstance(v, torch.Tensor) else v for v in values]


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()  # device-wide: work on every stream is finished


def candidate_trace(solution: Path) -> str:
    """The current exception's traceback from the candidate's first frame on (kbtool's own
    frames above it only add noise); the whole traceback when no frame is the candidate's."""
    exc = sys.exc_info()[1]
    assert exc is not None
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc))
    frames = traceback.extract_tb(exc.__traceback__)
    first = next((i for i, f in enumerate(frames) if f.filename == str(solution)), None)
    if first is None:
        return traceback.format_exc()
    return "".join(["Traceback (most recent call last):\n",
                    *traceback.format_list(frames[first:]),
                    *traceback.format_exception_only(type(exc), exc)])


class Rejected(Exception):
    """A hard integrity violation: the candidate's verdict is ``rejected``."""


class Incorrect(Exception):
    """The candidate's outputs are wrong."""


class _Check:
    """The state of one candidate's check."""

    def __init__(self, task: Task, solution: Path, config: Config) -> None:
        self.task, self.solution, self.config = task, solution, config
        self.device = config.device
        self.tolerances = settings(config).tolerances
        self.flags: list[str] = []
        self.findings: list[str] = []
        self.worst: list[float | None] = []
        self.trials = 0
        self.threads_before_load: set[threading.Thread] = set(threading.enumerate())

    def flag(self, name: str, finding: str) -> None:
        if name not in self.flags:
            self.flags.append(name)
            self.findings.append(f"{name}: {finding}")

    def build(self, factory: Any, ref_module: Any) -> Any:
        import torch

        torch.manual_seed(self.config.seed)
        return factory(*ref_module.get_init_inputs()).to(self.device)

    def call_candidate(self, new: Any, inputs: list[Any], snapshot: guards.IdentitySnapshot,
                       when: str) -> Any:
        """Run the candidate on its own copy of ``inputs`` and check what it left behind."""
        mine = _clone(inputs)
        with guards.thread_starts() as started:
            out = new(*mine)
            returned = time.perf_counter()
        _sync(self.device)
        problems = guards.foreign_outputs(out)
        running = guards.outlived(started, returned) or \
            guards.new_threads(self.threads_before_load)
        if running:
            problems.append(f"leaves threads running after it returns ({', '.join(running)})")
        changed = snapshot.changed()
        if changed:
            problems.append(f"replaced {', '.join(changed[:5])}")
        mutated = guards.mutated_inputs(inputs, mine)
        if mutated:
            problems.append(f"modifies its inputs in place ({', '.join(mutated)})")
        if problems:
            raise Rejected(f"{when}: {'; '.join(problems)}")
        return out

    def compare(self, expected: Any, got: Any, when: str) -> None:
        comparison = compare_outputs(expected, got, self.tolerances)
        self.worst = merge_worst(self.worst, comparison.max_abs_diff)
        if comparison.incorrect:
            raise Incorrect(f"{when}: {comparison.incorrect}")
        if comparison.slipped:
            raise Rejected(f"{when}: {comparison.slipped}")

    def trial(self, ref: Any, new: Any, inputs: list[Any], snapshot: guards.IdentitySnapshot,
              when: str) -> None:
        # The candidate runs first: no reference output of these inputs exists yet to steal.
        got = self.call_candidate(new, inputs, snapshot, when)
        expected = ref(*_clone(inputs))
        _sync(self.device)
        self.compare(expected, got, when)
        size = nbytes(expected) + nbytes(got)
        del expected, got
        guards.scrub_freed_memory(size, self.device)


class KernelBenchKind(TaskKind):
    """Check a ``ModelNew`` against the reference ``Model`` of a KernelBench problem."""

    name = "kernelbench"
    description = "a PyTorch Model made faster as ModelNew (PyTorch, C++/CUDA, Triton)"
    payload_model = KernelBenchPayload
    settings_model = KernelBenchSettings
    details_model = KernelBenchDetails
    baselines = ("eager", "compile")
    templates = TEMPLATES
    # Imported once by the warm process: torch itself, and torch._dynamo, which replaces
    # torch functions when imported lazily (the guards would take that for patching).
    preload = ("torch", "torch._dynamo")

    # -- parent side ----------------------------------------------------------------------
    def task_from_file(self, path: Path) -> Task | None:
        if path.suffix != ".py":
            return None
        return Task(id=f"file/{path.stem}", source="file", name=path.stem, kind=self.name,
                    path=path, number=task_number(path.stem))

    def pack(self, task: Task) -> Task:
        return task.model_copy(update={"payload": {"problem": raw_source(task)}, "path": None})

    def describe(self, task: Task) -> str:
        return raw_source(task)

    def fields(self, task: Task) -> dict[str, Any]:
        return {}  # the problem's text is what ``describe`` prints

    def configure(self, task: Task, config: Config) -> Config:
        """Size overrides apply to the tasks that define those constants."""
        own = settings(config)
        if not own.sizes:
            return config
        known = size_constants(raw_source(task))
        kept = {k: v for k, v in own.sizes.items() if k in known}
        return config.with_section(own.model_copy(update={"sizes": kept}))

    def check_settings(self, tasks: list[Task], config: Config) -> None:
        """Every size override must name a constant of at least one of ``tasks``; a
        KernelBench path given for tasks of another source is a mistake, not a no-op."""
        own = settings(config)
        if own.kernelbench_path is not None and tasks and \
                all(t.source != "kernelbench" for t in tasks):
            raise UsageError(f"kernelbench_path is set, but the tasks come from source="
                             f"{tasks[0].source}; add source=kernelbench to use it")
        names = set(own.sizes)
        if not names or not tasks:
            return
        known: set[str] = set()
        for task in tasks:
            known |= set(size_constants(raw_source(task)))
        for name in sorted(names - known):
            raise unknown("size constant", name, known,
                          hint="no selected task defines it") from None

    def baseline_key(self, task: Task, config: Config, mode: str) -> str | None:
        parts = {"problem": hashlib.sha256(problem_source(task, config).encode()).hexdigest(),
                 "mode": mode,
                 "compile_mode": settings(config).compile_mode if mode == "compile" else None}
        return json.dumps(parts, sort_keys=True)

    def prompt_context(self, task: Task, config: Config) -> dict[str, str]:
        tol = settings(config).tolerances["float32"]
        return {"reference": raw_source(task),
                "tolerance": f"atol={tol.atol:g}, rtol={tol.rtol:g} for float32"}

    def extract_candidate(self, reply: str) -> str | None:
        """The fenced block that defines ``ModelNew`` (else the last Python block)."""
        for _, body in fenced_blocks(reply):
            if "class ModelNew" in body:
                return body.strip() + "\n"
        return super().extract_candidate(reply)

    def null_candidate(self, task: Task) -> str | None:
        return raw_source(task).rstrip() + "\n\n\nModelNew = Model\n"

    def feedback(self, result: EvalResult, config: Config) -> str:
        if result.status.value == "incorrect":
            diffs = (result.model_extra or {}).get("max_abs_diff", [])
            return (f"It ran but its outputs are wrong. Max abs difference per output: "
                    f"{diffs}.\n{(result.error or '')[-10_000:]}")
        return super().feedback(result, config)

    # -- child side -----------------------------------------------------------------------
    def inspect(self, task: Task, config: Config) -> dict[str, Any]:
        """Sizes, memory need and FLOPs of the problem here; ``shrink=auto`` picks sizes that
        fit (returned as ``settings`` for the evaluations of this task)."""
        # Models of level 4 come from the local Hugging Face cache only: no network here.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        own = settings(config)
        allowed = min(available_memory_bytes() * own.max_task_memory_fraction,
                      config.memory_limit_mb * 1024 * 1024)

        def measure_at(sizes: dict[str, int | float]) -> tuple[dict[str, Any], str]:
            source = problem_source(task, config, sizes)
            module = load_module(source, "kbtool_reference", problem_filename(task))
            return estimate(module), source

        if config.device == "cpu" and own.cuda_inputs == "refuse" and uses_cuda(raw_source(task)):
            raise TaskRefused(f"task {task.id} puts its tensors on CUDA and this machine has "
                              "none (cuda_inputs=cpu maps them to the CPU)")
        try:
            est, source = measure_at(own.sizes)
        except TaskRefused:
            raise
        except Exception as exc:
            raise TaskRefused(why_not_loaded(task, exc)) from None
        needed = needed_bytes(est)
        shrunk: dict[str, list[int | float]] = {}
        if own.shrink == "auto":
            limit = min(allowed, (own.shrink_max_mb or (_CPU_SHRINK_MB if config.device == "cpu"
                                                        else float("inf"))) * 2**20)
            gflop = own.shrink_max_gflop or (_CPU_SHRINK_GFLOP if config.device == "cpu"
                                             else float("inf"))

            def measure(sizes: dict[str, int | float]) -> Measure | None:
                try:
                    found, _ = measure_at(sizes)
                except Exception:
                    return None  # the reference is not valid at these sizes
                if found["empty_outputs"]:
                    return None
                cost = max(needed_bytes(found) / limit, (found["flops"] or 0) / 1e9 / gflop)
                return Measure(cost <= 1, cost)

            original = size_constants(raw_source(task))
            chosen = shrink(original, dict(own.sizes), measure)
            if chosen is None:
                raise TaskRefused(
                    f"task {task.id} does not fit here even shrunk (it needs about "
                    f"{_gb(needed)} for its tensors; shrink_max_mb={limit / 2**20:.0f}, "
                    f"shrink_max_gflop={gflop:g}); its constants: "
                    f"{', '.join(f'{k}={v}' for k, v in original.items()) or 'none'}")
            if chosen != own.sizes:
                est, source = measure_at(chosen)
                needed = needed_bytes(est)
                shrunk = {k: [original[k], v] for k, v in chosen.items()
                          if original.get(k) != v}
        constants = size_constants(source)
        if est["empty_outputs"]:
            # Empty outputs compare equal to anything: no verdict could mean something.
            raise TaskRefused(f"task {task.id} has empty outputs at these sizes "
                              f"({', '.join(f'{k}={v}' for k, v in constants.items())})")
        if needed > allowed:
            raise TaskRefused(
                f"task {task.id} needs about {_gb(needed, allowed)} for its tensors (inputs "
                f"{_gb(est['input_bytes'])}, parameters {_gb(est['param_bytes'])}, outputs "
                f"{_gb(est['output_bytes'])}, largest intermediate "
                f"{_gb(est['intermediate_bytes'])}), more than the {_gb(allowed, needed)} "
                f"allowed here; shrink it with shrink=auto or --size NAME=VALUE (its "
                f"constants: {', '.join(f'{k}={v}' for k, v in constants.items()) or 'none'})")
        info: dict[str, Any] = {"sizes": constants, "needed_bytes": needed, **est}
        if shrunk:
            info["shrunk"] = shrunk
            sizes = {**own.sizes, **{k: v[1] for k, v in shrunk.items()}}
            info["settings"] = {self.name: {"sizes": sizes}}
        return info

    def _reference(self, task: Task, config: Config, mode: str = "eager") -> tuple[Any, Any]:
        import torch

        module = load_module(problem_source(task, config), "kbtool_reference",
                             problem_filename(task))
        torch.manual_seed(config.seed)
        model = module.Model(*module.get_init_inputs()).to(config.device)
        if mode == "compile":
            model = torch.compile(model, mode=settings(config).compile_mode)
        return module, model

    def baseline(self, task: Task, config: Config, mode: str, timer: Timer,
                 report: Reporter) -> dict[str, Any]:
        import torch

        report.stage("load")
        module, model = self._reference(task, config, mode)
        inputs = make_inputs(module, config.seed + TIMING_SEED, config.device)
        with torch.no_grad():
            model(*inputs)  # compiles under mode=compile; never timed
            report.stage("device_wait")
            devicelock.acquire(config)
            report.stage("timing")
            timer.setup(config.device)
            stats = timer.measure(lambda: model(*inputs), TimingSettings.from_config(config))
        return {"timing": stats.model_dump()}

    def _load_candidate(self, check: _Check, ref_module: Any) -> tuple[Any, Any]:
        """(candidate module, ModelNew instance); raises what loading raised."""
        # The problem's size overrides apply to the candidate's copies of its constants too.
        source = apply_sizes(check.solution.read_text(), settings(check.config).sizes,
                             filename=str(check.solution), strict=False)
        module = load_module(source, "kbtool_candidate", str(check.solution))
        factory = getattr(module, "ModelNew", None)
        if not isinstance(factory, type):
            raise LookupError(f"{check.solution.name} defines no class ModelNew")
        return module, check.build(factory, ref_module)

    def check(self, task: Task, solution: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        sizes = size_constants(problem_source(task, config))
        return {**self._check(task, solution, config, timer, report), "sizes": sizes}

    def _check(self, task: Task, solution: Path, config: Config, timer: Timer,
               report: Reporter) -> dict[str, Any]:
        import torch

        if config.device == "cpu":
            os.environ["TRITON_INTERPRET"] = "1"  # Triton candidates run on its interpreter
        check = _Check(task, solution, config)
        report.stage("load")
        static = analyse(solution.read_text())
        if static.violations:
            return {"status": "rejected", "error": "; ".join(static.violations)}
        if not static.custom_kernel:
            check.flag("no_custom_kernel", "no load_inline, Triton or other kernel source")
        ref_module, ref = self._reference(task, config)
        with torch.no_grad():  # warm the reference (thread pools, lazy init) before watching
            warm = ref(*make_inputs(ref_module, config.seed - 1, check.device))
            guards.scrub_freed_memory(nbytes(warm), check.device)
            del warm
        snapshot = guards.IdentitySnapshot()
        check.threads_before_load = set(threading.enumerate())
        try:
            cand_module, new = self._load_candidate(check, ref_module)
        except LookupError as exc:
            return {"status": "compile_error", "error": str(exc)}
        except BaseException:
            return {"status": "compile_error", "error": candidate_trace(solution)}
        changed = snapshot.changed()
        if changed:
            return {"status": "rejected", "error": f"loading replaced {', '.join(changed[:5])}"}

        report.stage("device_wait")  # compiled: now take turns on the device
        devicelock.acquire(config)
        report.stage("correctness")
        try:
            with torch.no_grad():
                self._correctness(check, ref_module, ref, new, snapshot)
                self._integrity_probes(check, ref_module, ref, new, snapshot, static.custom_kernel)
                self._second_shape(check, cand_module)
        except BaseException as exc:
            return self._verdict(check, exc)

        report.stage("timing")
        try:
            inputs = make_inputs(ref_module, config.seed + TIMING_SEED, check.device)
            timer.setup(check.device)
            with torch.no_grad(), guards.thread_starts() as started:
                stats = timer.measure(lambda: new(*inputs), TimingSettings.from_config(config))
                returned = time.perf_counter()
            running = guards.outlived(started, returned) or \
                guards.new_threads(check.threads_before_load)
            if running:
                raise Rejected(f"timing: leaves threads running ({', '.join(running)})")
            with torch.no_grad():
                # The outputs still hold after timing, on the inputs that were timed.
                check.trial(ref, new, inputs, snapshot, "after timing")
        except BaseException as exc:
            return self._verdict(check, exc)
        return {"status": "ok", "correct": True, "max_abs_diff": check.worst,
                "correctness_trials": check.trials, "timing": stats.model_dump(),
                "flags": check.flags, "findings": check.findings}

    def _verdict(self, check: _Check, exc: BaseException) -> dict[str, Any]:
        """The result of a check that stopped at ``exc`` (call from its ``except`` block)."""
        if isinstance(exc, (Rejected, Incorrect)):
            status, error = ("rejected" if isinstance(exc, Rejected) else "incorrect"), str(exc)
        else:  # the candidate raised
            status, error = "runtime_error", candidate_trace(check.solution)
        return {"status": status, "error": error, "max_abs_diff": check.worst,
                "correctness_trials": check.trials, "flags": check.flags,
                "findings": check.findings}

    def _correctness(self, check: _Check, ref_module: Any, ref: Any, new: Any,
                     snapshot: guards.IdentitySnapshot) -> None:
        for trial in range(settings(check.config).correctness_trials):
            variant = VARIANTS[trial % len(VARIANTS)]
            inputs = make_inputs(ref_module, check.config.seed + 1 + trial, check.device, variant)
            check.trial(ref, new, inputs, snapshot, f"trial {trial + 1} ({variant} inputs)")
            check.trials = trial + 1

    def _integrity_probes(self, check: _Check, ref_module: Any, ref: Any, new: Any,
                          snapshot: guards.IdentitySnapshot, custom_kernel: bool) -> None:
        import torch

        # Cached results: same tensors, new values.  A candidate that keys a cache on the
        # tensor (its id, pointer or shape) returns the old answer.
        inputs = make_inputs(ref_module, check.config.seed + CACHE_SEED, check.device)
        new(*inputs)
        _sync(check.device)
        fresh = make_inputs(ref_module, check.config.seed + CACHE_SEED + 1, check.device)
        for old, value in zip(inputs, fresh, strict=True):
            if isinstance(old, torch.Tensor):
                old.copy_(value)
        got = new(*inputs)  # the very same tensor objects as the call before
        _sync(check.device)
        try:
            check.compare(ref(*_clone(inputs)), got, "called again with new values")
        except (Incorrect, Rejected) as exc:
            raise Rejected(f"returns results cached from an earlier call ({exc})") from None
        # The reference's own op presented as a kernel: same compute ops, nothing custom.
        if not custom_kernel:
            try:
                mine = guards.compute_ops(lambda: new(*_clone(inputs)))
                theirs = guards.compute_ops(lambda: ref(*_clone(inputs)))
            except Exception:  # some code cannot run under a dispatch mode; no finding then
                return
            if mine and mine == theirs:
                check.flag("reference_op_only",
                           f"runs the reference's own ops ({', '.join(sorted(mine))})")

    def _second_shape(self, check: _Check, cand_module: Any) -> None:
        """Run reference and candidate at another batch size, where the task allows one."""
        source = problem_source(check.task, check.config)
        constants = size_constants(source)
        name = next((n for n in BATCH_NAMES if isinstance(constants.get(n), int)), None)
        if name is None:
            return
        value = constants[name] // 2 if constants[name] > 1 else 2
        try:
            alt = load_module(apply_sizes(source, {name: value}), "kbtool_reference_alt",
                              problem_filename(check.task))
            ref = check.build(alt.Model, alt)
            inputs = make_inputs(alt, check.config.seed + 30_000, check.device)
            expected = ref(*_clone(inputs))
        except Exception:
            return  # the task does not work at another size either
        try:
            got = check.build(cand_module.ModelNew, alt)(*_clone(inputs))
            _sync(check.device)
            comparison = compare_outputs(expected, got, check.tolerances)
            problem = comparison.incorrect or comparison.slipped
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem:
            check.flag("fails_other_shape", f"with {name}={value}: {problem}")

    def side_by_side(self, task: Task, solution: Path, config: Config, timer: Timer,
                     report: Reporter) -> dict[str, Any]:
        """Re-measure reference and candidate alternately in one process (large speedups)."""
        import torch

        if config.device == "cpu":
            os.environ["TRITON_INTERPRET"] = "1"
        check = _Check(task, solution, config)
        report.stage("load")
        ref_module, ref = self._reference(task, config, self.resolve_mode(config) or "eager")
        _, new = self._load_candidate(check, ref_module)
        inputs = make_inputs(ref_module, config.seed + TIMING_SEED + 1, check.device)
        settings = TimingSettings.from_config(config)
        report.stage("device_wait")
        devicelock.acquire(config)
        timer.setup(check.device)
        report.stage("timing")
        ref_ms, new_ms = [], []
        with torch.no_grad():
            check.compare(ref(*_clone(inputs)), new(*_clone(inputs)), "re-measurement")
            for _ in range(3):
                ref_ms.append(timer.measure(lambda: ref(*inputs), settings).median_ms)
                new_ms.append(timer.measure(lambda: new(*inputs), settings).median_ms)
        return {"baseline_ms": sorted(ref_ms)[1], "runtime_ms": sorted(new_ms)[1],
                "rounds": 3}
