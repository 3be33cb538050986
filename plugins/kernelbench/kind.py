"""The ``kernelbench`` task kind: a reference ``Model`` and a candidate ``ModelNew``.

The parent-side methods run in kbtool's process; ``inspect`` and ``baseline`` run inside an
isolated child (``kbtool.sandbox.isolation``), and ``check`` is the judge (``judge``): an
isolated child that never runs the candidate's code, but has it run, and the reference, by
two runner processes of its own (``runner``), and decides everything from what it can check
itself (docs/integrity.md).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kbtool.errors import UsageError, unknown
from kbtool.task.kind import TaskKind, fenced_blocks
from kbtool.task.model import Task, TaskRefused
from kbtool_plugins.kernelbench.problem import (
    apply_sizes,
    available_memory_bytes,
    cuda_to_cpu,
    derived_constants,
    estimate,
    load_module,
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
from kbtool_plugins.kernelbench.sources import ROW_COLUMNS, tasks_from_rows

if TYPE_CHECKING:  # names for annotations only: listing tasks does not import them
    from kbtool.config import Config
    from kbtool.evaluation.result import EvalResult
    from kbtool.sandbox.isolation import Reporter
    from kbtool.timing.base import Timer

TEMPLATES = Path(str(importlib.resources.files("kbtool_templates"))) / "kernelbench"

# Copies alive at once while checking: reference and candidate parameters; inputs in each
# runner's buffers (two sets at least: the timed calls rotate them) and the judge's copy;
# both models' outputs and the buffers they are fetched into; both models' largest
# intermediates, and the working copies of a comparison (by chunks: compare.CHUNK).
_PARAM_COPIES, _INPUT_COPIES, _OUTPUT_COPIES, _INTERMEDIATE_COPIES = 2, 5, 4, 2
_COMPARE_BYTES = 64 * 2**20
# shrink=auto on a CPU: what one problem may take (a level-1 batch then runs in minutes).
_CPU_SHRINK_MB, _CPU_SHRINK_GFLOP = 512.0, 2.0
# The extra that installs what KernelBench's problems import (einops, transformers, ...).
EXTRA = "kernelbench"
_MODEL_NAME = re.compile(r"""^\s*model_name\s*=\s*["']([^"']+)["']""", re.MULTILINE)
# How the reference is timed (``baseline``); in the cache's key, so that a baseline timed
# another way, by an earlier kbtool, is never reused.
TIMING_METHOD = "judge-fresh-inputs"


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


def _extra_packages() -> set[str]:
    """What ``pip install 'kbtool[kernelbench]'`` brings (from kbtool's metadata)."""
    try:
        requires = importlib.metadata.requires("kbtool") or []
    except importlib.metadata.PackageNotFoundError:
        return set()
    marker = re.compile(rf"""extra\s*==\s*["']{EXTRA}["']""")
    return {re.split(r"[^A-Za-z0-9._-]", line, maxsplit=1)[0].lower().replace("-", "_")
            for line in requires if marker.search(line)}


def why_not_loaded(task: Task, exc: BaseException) -> str:
    """One line on why a problem does not load here, with what to do about it."""
    text = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    lower = str(exc).lower()
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        package = exc.name.split(".")[0]
        hint = (f"pip install 'kbtool[{EXTRA}]': KernelBench's own dependencies"
                if package.lower() in _extra_packages() else f"pip install {package}")
        return (f"task {task.id} needs the Python package {exc.name!r}, which is not installed "
                f"here ({hint})")
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
    # torch functions when imported lazily (the guards would take that for patching); the
    # judge and the statistics it uses, which kbtool's other commands do without.
    preload = ("torch", "torch._dynamo", "scipy.stats", "kbtool_plugins.kernelbench.judge")
    check_runs_candidate = False  # a judge: candidates run in processes it confines
    row_columns = ROW_COLUMNS

    # -- parent side ----------------------------------------------------------------------
    def task_from_file(self, path: Path) -> Task | None:
        if path.suffix != ".py":
            return None
        return Task(id=f"file/{path.stem}", source="file", name=path.stem, kind=self.name,
                    path=path, number=task_number(path.stem))

    def tasks_from_rows(self, rows: list[dict[str, Any]], source: str,
                        config: Config) -> list[Task]:
        return tasks_from_rows(rows, source, config.cache_dir)

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
                 "mode": mode, "method": TIMING_METHOD,
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
                return Measure(cost <= 1, cost, needed_bytes(found) <= allowed)

            original = size_constants(raw_source(task))
            derived = derived_constants(raw_source(task))  # they follow what they use
            chosen = shrink({k: v for k, v in original.items() if k not in derived},
                            dict(own.sizes), measure)
            if chosen is None:
                raise TaskRefused(
                    f"task {task.id} does not fit here even shrunk (it needs about "
                    f"{_gb(needed)} for its tensors, {_gb(allowed)} allowed); its constants: "
                    f"{', '.join(f'{k}={v}' for k, v in original.items()) or 'none'}")
            if chosen != own.sizes:
                est, source = measure_at(chosen)
                needed = needed_bytes(est)
                used = size_constants(source)  # with the constants that followed
                shrunk = {k: [v, used[k]] for k, v in original.items() if used.get(k, v) != v}
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
            info["settings"] = {self.name: {"sizes": chosen}}
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
        """The reference timed by the judge, exactly as in a candidate's check (every call on
        never-seen inputs, windows, the same clock), against itself as the candidate: a
        baseline timed any other way is not comparable with the judge's figures (one fixed
        input set, warm in the caches, read 2-11x below the judge's reference arm)."""
        from kbtool_plugins.kernelbench.judge import Judge

        null = Path.cwd() / "baseline_null.py"
        null.write_text(self.null_candidate(task) or "")
        own = config.model_copy(update={"mode": mode, "baselines": [], "speedup_from": "paired"})
        source = problem_source(task, config)
        verdict = Judge(task, null, own, timer, report, timing_only=True).run(
            source, problem_filename(task))
        if verdict.get("status") != "ok" or "baseline" not in verdict:
            raise RuntimeError(f"the reference, judged against itself, is "
                               f"{verdict.get('status')}: {verdict.get('error') or ''}".strip())
        return {"timing": verdict["baseline"]}

    def audit(self, task: Task, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        """``kbtool tasks check``: the default (``ModelNew = Model`` passes the judge, at the
        sizes ``inspect`` chose), and the reference's outputs: finite, the same twice on the
        same inputs, and different on other inputs (else a constant output passes)."""
        import torch

        from kbtool.task.model import TaskAudit
        from kbtool_plugins.kernelbench.compare import compare_outputs, flatten
        from kbtool_plugins.kernelbench.judge import make_inputs

        found = TaskAudit.model_validate(super().audit(task, config, timer, report))
        report.stage("reference")
        module, model = self._reference(task, config)
        tolerances = settings(config).tolerances

        def outputs(seed: int) -> Any:
            inputs = [v.to(config.device) if isinstance(v, torch.Tensor) else v
                      for v in make_inputs(module, seed)]
            with torch.no_grad():
                return model(*inputs)

        first, again, other = outputs(config.seed), outputs(config.seed), outputs(config.seed + 1)
        if any(t.is_floating_point() and not bool(torch.isfinite(t).all())
               for t in flatten(first)):
            found.problems.append("the reference's outputs hold NaN or inf at these sizes")
        same = compare_outputs(first, again, tolerances).incorrect
        if same:
            found.problems.append(f"the reference gives other outputs on the same inputs "
                                  f"({same}): it must be deterministic within the tolerance")
        if compare_outputs(first, other, tolerances).incorrect is None:
            found.problems.append("the reference's outputs do not depend on its inputs "
                                  "(other inputs compare equal): a constant output would pass")
        if not found.problems:
            found.checked.append("the reference's outputs are finite, repeatable and depend "
                                 "on its inputs")
        return found.model_dump()

    def check(self, task: Task, solution: Path, config: Config, timer: Timer,
              report: Reporter) -> dict[str, Any]:
        """The candidate judged by a process that never runs its code (``judge``)."""
        from kbtool_plugins.kernelbench.judge import Judge

        source = problem_source(task, config)
        verdict = Judge(task, solution, config, timer, report).run(source, problem_filename(task))
        return {**verdict, "sizes": size_constants(source)}
