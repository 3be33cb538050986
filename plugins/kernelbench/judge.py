"""The KernelBench judge: checks and times a candidate without ever running its code.

The judge is the kind's ``check``, in an isolated child of the zygote.  Before it runs a
torch op it forks two runners (``runner``): one loads the reference ``Model``, the other the
candidate's ``ModelNew``, each in namespaces of its own.  Everything that decides a verdict
happens here, in a process the candidate cannot reach:

- inputs come from the problem's ``get_inputs()`` under seeds drawn from the OS for this
  evaluation, and reach each runner through a shared buffer of its own;
- the reference runner's outputs are the expected ones; the comparison is made here;
- status, stage times and time limits are the judge's, by its own clock; every message a
  runner sends is validated, and a violation rejects the candidate;
- timing is paired: reference and candidate windows alternate, round by round, under the
  device lock, timed by the judge's clock around each window (the runner synchronises the
  whole device inside it); the speedup is the ratio of the pairs with its interval
  (``kbtool.timing.compare``), the loop stops when that interval is tight;
- timed calls take their inputs from a pool that is rotated and refreshed between windows,
  and a random sample of timed calls has its outputs checked;
- the CPU time of the candidate's processes between its windows is measured, so work moved
  out of the timed window is seen.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import secrets
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kbtool.config import Config
from kbtool.evaluation.result import TimingStats
from kbtool.sandbox import devicelock
from kbtool.sandbox.channel import ProtocolViolation, SharedBuffer
from kbtool.sandbox.isolation import Reporter
from kbtool.sandbox.namespaces import SandboxPolicy
from kbtool.sandbox.runner import Runner, RunnerFailed, start_runner
from kbtool.task.model import Task
from kbtool.timing.base import Timer, TimingSettings, adaptive
from kbtool.timing.compare import Rounds, StopRule, rotation, run_rounds
from kbtool.timing.noise import Noise, assess, machine_state, usable_threads
from kbtool.timing.stats import summarize
from kbtool_plugins.kernelbench import guards
from kbtool_plugins.kernelbench.compare import compare_outputs, merge_worst
from kbtool_plugins.kernelbench.problem import apply_sizes, load_module, size_constants
from kbtool_plugins.kernelbench.protocol import (
    DTYPES,
    REPLIES,
    REQUESTS,
    Arg,
    Attach,
    Done,
    DType,
    Failed,
    Fetch,
    Fetched,
    Load,
    Mode,
    Ops,
    OpsSeen,
    OutputBuffer,
    Prepare,
    Ran,
    Refresh,
    Reshape,
    Run,
    Stop,
    TensorSpec,
)
from kbtool_plugins.kernelbench.runner import align, contiguous_strides, dtype_of, serve, view
from kbtool_plugins.kernelbench.settings import KernelBenchSettings
from kbtool_plugins.kernelbench.shrink import is_batch
from kbtool_plugins.kernelbench.static_checks import analyse

# Input distributions, cycled over the correctness trials (trial 0 is the task's own).
VARIANTS = ("plain", "scaled", "spiky")
WINDOW_MS = 10.0          # a timed window holds calls for about this long (IPC cost << 1%)
MAX_CALLS = 256           # calls in one window at most
MAX_POOL = 16             # input sets rotated through the timed calls at most
POOL_GEN_S = 0.15         # time spent making the first pool at most (it has 2 sets at least)
POOL_SHARE = 0.15         # ... and this share of max_timing_s at most (refreshes add more)
POOL_BYTES = 128 * 2**20  # memory of the pool (judge's copy + one per runner) at most
REFRESH_SHARE = 0.25      # refreshing pool sets may take this share of the timed time
CHECK_SHARE = 0.3         # share of rounds one of whose calls is checked (and the last)
PINGS = 5                 # empty windows per runner: the IPC cost a window's time includes
KEEP_BYTES = 64 * 2**20   # outputs of one window's calls kept for checking at most
# Work outside the timed windows beyond the reference's: this much CPU, or this share of the
# candidate's CPU inside its windows, whichever is larger, rejects it.
HIDDEN_MIN_MS, HIDDEN_SHARE = 60.0, 0.25
# The judge reports before the zygote's hard limit ends it.
_DEADLINE_MARGIN_S = 1.0
# The pool of timed inputs reuses the correctness trials' slots (and their buffers).
_TRIAL_SLOT, _PROBE_SLOT, _ALT_SLOT = 0, 1, MAX_POOL


class Rejected(Exception):
    """A hard integrity violation: the candidate's verdict is ``rejected``."""


class Incorrect(Exception):
    """The candidate's outputs are wrong."""


class Unsupported(Exception):
    """The task's inputs cannot be handed to another process (not the candidate's fault)."""


def make_inputs(module: Any, seed: int, variant: str = "plain") -> list[Any]:
    """``get_inputs()`` under ``seed``, on the CPU; floating inputs reshaped by ``variant`` so
    that a kernel which skips part of the data, or assumes one distribution, is seen."""
    import torch

    torch.manual_seed(seed)
    out = []
    for value in module.get_inputs():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.is_floating_point() and variant == "scaled":
                value = value * torch.exp(0.75 * torch.randn_like(value))  # ~2 orders
            elif value.is_floating_point() and variant == "spiky":
                value = torch.where(torch.rand_like(value) < 0.01, value * 8, value)
        out.append(value)
    return out


def os_seed() -> int:
    """A seed nobody can know in advance (not derived from the settings)."""
    return secrets.randbits(62)


@dataclass
class Layout:
    size: int
    args: list[Arg]


def layout_of(values: list[Any]) -> Layout:
    """Where each input goes in a shared buffer (tensors keep their strides)."""
    import torch

    offset, args = 0, []
    for i, value in enumerate(values):
        if isinstance(value, torch.Tensor):
            dtype = str(value.dtype).replace("torch.", "")
            if dtype not in DTYPES:
                raise Unsupported(f"input {i} has dtype {dtype}, which the judge cannot pass on")
            stride = list(torch.empty_like(value).stride())
            extent = 1 + sum((n - 1) * s for n, s in zip(value.shape, stride, strict=True)) \
                if value.numel() else 0
            args.append(Arg(tensor=TensorSpec(offset=offset, shape=list(value.shape),
                                              stride=stride, dtype=cast(DType, dtype))))
            offset = align(offset + extent * value.element_size())
        elif value is None or isinstance(value, (bool, int, float, str)) or (
                isinstance(value, list) and all(isinstance(v, (int, float)) for v in value)):
            args.append(Arg(value=value))
        else:
            raise Unsupported(f"input {i} is a {type(value).__name__}, which the judge cannot "
                              "pass to another process")
    return Layout(offset, args)


def write(buffer: SharedBuffer, layout: Layout, values: list[Any]) -> None:
    for arg, value in zip(layout.args, values, strict=True):
        if arg.tensor is not None and value.numel():
            view(buffer, arg.tensor).copy_(value)


@dataclass
class Side:
    """One runner as the judge uses it: its input buffers and its output buffer."""

    role: str
    runner: Runner[Any, Any]
    deadline: list[float]
    buffers: dict[int, tuple[SharedBuffer, Layout]] = field(default_factory=dict)
    out: SharedBuffer | None = None

    def ask(self, request: Any, fds: tuple[int, ...] = ()) -> Any:
        return self.runner.ask(request, self.deadline[0], fds)

    def put(self, slot: int, values: list[Any]) -> None:
        """Give this runner ``values`` in ``slot`` (a new buffer when the layout changed)."""
        layout = layout_of(values)
        held = self.buffers.get(slot)
        if held is not None and held[1] == layout:
            write(held[0], layout, values)
            self.expect(self.ask(Refresh(slot=slot)), Done)
            return
        buffer = SharedBuffer(layout.size)
        write(buffer, layout, values)
        if held is not None:
            held[0].close()
        self.buffers[slot] = (buffer, layout)
        self.expect(self.ask(Attach(slot=slot, size=layout.size, args=layout.args),
                             (buffer.fd,)), Done)

    def inputs(self, slot: int) -> list[Any]:
        """The slot's inputs as the runner has them now (on the CPU: the very memory)."""
        buffer, layout = self.buffers[slot]
        return [view(buffer, a.tensor) if a.tensor is not None else a.value
                for a in layout.args]

    def run(self, slots: list[int], model: Mode = "eager", checked: bool = False) -> Ran:
        reply = self.expect(self.ask(Run(slots=slots, model=model, checked=checked)), Ran)
        if reply.calls != len(slots):
            raise ProtocolViolation(f"the {self.role} ran {reply.calls} calls of {len(slots)}")
        return reply

    def fetch(self, index: int, limit: int | None = None) -> tuple[list[Any], list[str]]:
        """The outputs of call ``index`` of the last run, as tensors on the output buffer (on
        the meta device when they would need more than ``limit`` bytes: only their shapes
        are compared then), and the runner's own problems with them."""
        import torch

        for _ in range(2):
            if self.out is None:
                self._grow(1 << 20)
            reply = self.expect(self.ask(Fetch(index=index)), Fetched)
            if reply.problems or reply.written:
                break
            assert self.out is not None
            needed = extent(reply.outputs)
            if needed <= self.out.size:
                raise ProtocolViolation(f"the {self.role} did not write outputs that fit")
            if limit is not None and needed > limit:
                return [torch.empty(s.shape, dtype=dtype_of(s.dtype), device="meta")
                        for s in reply.outputs], []
            self._grow(needed)
        else:
            raise ProtocolViolation(f"the {self.role} did not write its outputs")
        assert self.out is not None
        if reply.problems:
            return [], list(reply.problems)
        if extent(reply.outputs) > self.out.size or \
                any(s.stride != contiguous_strides(s.shape) for s in reply.outputs):
            raise ProtocolViolation(f"the {self.role} described outputs outside its buffer")
        return [view(self.out, s) for s in reply.outputs], []

    def _grow(self, size: int) -> None:
        if self.out is not None:
            self.out.close()
        self.out = SharedBuffer(align(int(size * 1.25)))
        self.expect(self.ask(OutputBuffer(size=self.out.size), (self.out.fd,)), Done)

    def expect(self, reply: Any, kind: type) -> Any:
        if isinstance(reply, Failed):
            raise CallFailed(self.role, reply)
        if not isinstance(reply, kind):
            raise ProtocolViolation(f"the {self.role} answered {type(reply).__name__} where "
                                    f"{kind.__name__} was due")
        return reply

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.runner.channel.send(Stop())
        self.runner.close()
        for buffer, _ in self.buffers.values():
            buffer.close()
        if self.out is not None:
            self.out.close()


def extent(specs: list[TensorSpec]) -> int:
    """Bytes of a buffer that ``specs`` (contiguous tensors) reach into."""
    return max((s.offset + math.prod(s.shape) * dtype_of(s.dtype).itemsize for s in specs),
               default=0)


class CallFailed(Exception):
    """A runner's model raised (loading or calling)."""

    def __init__(self, role: str, reply: Failed) -> None:
        super().__init__(reply.error)
        self.role, self.reply = role, reply


@dataclass
class Window:
    """One timed window of calls: the judge's clock around it, the runner's CPU time in it."""

    wall_ms: float  # per call, the IPC cost (an empty window's) taken out
    cpu_ms: float   # the same, in CPU time of the runner's processes
    wall_ns: int    # the whole window
    cpu_ns: int

    def ms(self, clock: str) -> float:
        return self.cpu_ms if clock == "cpu" else self.wall_ms


class Judge:
    """One candidate's check (see the module docstring)."""

    def __init__(self, task: Task, solution: Path, config: Config, timer: Timer,
                 report: Reporter) -> None:
        self.task, self.solution, self.config, self.timer = task, solution, config, timer
        self.report = report
        self.own = config.section(KernelBenchSettings)
        timeout = config.timeout_s
        # From when the time limit started (the fork), so the judge reports before the limit.
        self.deadline = [report.started + max(timeout / 2, timeout - _DEADLINE_MARGIN_S)]
        self.flags: list[str] = []
        self.findings: list[str] = []
        self.worst: list[float | None] = []
        self.trials = 0
        self.stage = "load"
        self.sides: dict[str, Side] = {}

    def flag(self, name: str, finding: str) -> None:
        if name not in self.flags:
            self.flags.append(name)
            self.findings.append(f"{name}: {finding}")

    # -- the verdict --------------------------------------------------------------------------
    def run(self, problem_source: str, problem_file: str) -> dict[str, Any]:
        self.report.stage("load")
        text = self.solution.read_text()
        static = analyse(text)
        if static.violations:
            return {"status": "rejected", "error": "; ".join(static.violations)}
        self.problem_source, self.problem_file = problem_source, problem_file
        candidate_source = apply_sizes(text, self.own.sizes, filename=str(self.solution),
                                       strict=False)
        try:
            self._start()  # forks: before any torch op here
            result = self._judge(static.custom_kernel, candidate_source)
        except RunnerFailed as exc:
            result = self._failed(exc)
        except ProtocolViolation as exc:
            result = self._result("rejected", f"the candidate's process broke the protocol "
                                              f"during {self.stage}: {exc}")
        except CallFailed as exc:
            if exc.role == "reference":
                result = {"status": "runtime_error",
                          "error": f"the reference failed during {self.stage}:\n{exc}"}
            else:
                status = "compile_error" if exc.reply.where == "load" else "runtime_error"
                result = self._result(status, exc.reply.error)
        except Unsupported as exc:
            result = {"status": "runtime_error", "error": str(exc)}
        except Rejected as exc:
            result = self._result("rejected", str(exc))
        except Incorrect as exc:
            result = self._result("incorrect", str(exc))
        finally:
            for side in self.sides.values():
                side.runner.kill(wait=False)  # both end at once
            for side in self.sides.values():
                side.close()
        return result

    def _result(self, status: str, error: str) -> dict[str, Any]:
        return {"status": status, "error": error, "max_abs_diff": self.worst,
                "correctness_trials": self.trials, "flags": self.flags,
                "findings": self.findings}

    def _failed(self, exc: RunnerFailed) -> dict[str, Any]:
        if exc.who == "reference" and exc.status != "timeout":
            return {"status": "runtime_error",
                    "error": f"the reference's process failed during {self.stage}: {exc}"}
        if exc.status == "timeout":
            return self._result("timeout", f"timed out after {self.config.timeout_s:g} s "
                                           f"(during {self.stage})")
        status = "compile_error" if self.stage == "load" else "runtime_error"
        return self._result(status, f"{exc} (during {self.stage})")

    def _start(self) -> None:
        policy = SandboxPolicy(self.config.sandbox, self.config.max_processes)
        scratch = Path.cwd()
        memory = self.config.memory_limit_mb * 2**20
        for role in ("reference", "candidate"):
            runner = start_runner(role, serve, scratch / role, policy, REQUESTS, REPLIES,
                                  memory)
            self.sides[role] = Side(role, runner, self.deadline)
        for side in self.sides.values():
            side.runner.started(self.deadline[0])
        # Added to what the judge's own process got (kbtool.sandbox.isolation).
        self.report.send({"sandbox": self.sides["candidate"].runner.sandbox})

    def _judge(self, custom_kernel: bool, candidate_source: str) -> dict[str, Any]:
        import torch

        device = self.config.device
        threads = torch.get_num_threads()
        if device == "cpu":
            # One thread by default: on a shared or small machine a second thread costs
            # scheduler ticks that the paired ratio does not cancel (docs/evaluation.md).
            wanted = self.own.cpu_threads
            threads = usable_threads(threads) if wanted == "auto" else wanted
        # The judge's own work (inputs, comparisons) happens while the runners wait: one
        # thread does not take the CPUs a measurement may need, nor wait on a busy machine.
        torch.set_num_threads(1)
        mode: Mode = "compile" if self.config.mode == "compile" else "eager"
        # Single-threaded runners share one CPU: neither gets a core the other does not (the
        # CPU clock then compares like with like), and they take turns anyway.
        cpu = max(os.sched_getaffinity(0)) if device == "cpu" and threads == 1 else None
        load = Load(problem=self.problem_source, problem_file=self.problem_file, seed=os_seed(),
                    device=device, timer=self.timer.name, threads=threads, cpu=cpu,
                    compile_mode=self.own.compile_mode)
        ref, cand = self.sides["reference"], self.sides["candidate"]
        # Both load at once: compiling one does not wait for the other.
        ref.runner.channel.send(load.model_copy(update={"modes": ["eager", mode]}))
        cand.runner.channel.send(load.model_copy(update={
            "solution": candidate_source, "solution_file": str(self.solution)}))
        ref.expect(ref.runner.wait(self.deadline[0]), Done)
        loaded = cand.expect(cand.runner.wait(self.deadline[0]), Done)
        if loaded.problems:
            raise Rejected(f"loading {'; '.join(loaded.problems)}")
        self.module = load_module(self.problem_source, "kbtool_reference", self.problem_file)

        self._stage("device_wait")
        waited = time.monotonic()
        devicelock.acquire(self.config)
        self.deadline[0] += time.monotonic() - waited  # the device's time, not the candidate's
        self._stage("correctness")
        self._correctness()
        self._probes(custom_kernel)

        self._stage("timing")
        timing = self._timing(mode, threads)
        self._second_shape()
        return {"status": "ok", "correct": True, "max_abs_diff": self.worst,
                "correctness_trials": self.trials, "flags": self.flags,
                "findings": self.findings, **timing}

    def _stage(self, name: str) -> None:
        self.stage = name
        self.report.stage(name)

    # -- correctness ----------------------------------------------------------------------------
    def _call(self, slot: int, values: list[Any], when: str, checked: bool = True) -> None:
        """Both runners call their model once on ``values``; the outputs must agree."""
        ref, cand = self.sides["reference"], self.sides["candidate"]
        for side in (ref, cand):
            side.put(slot, values)
        ran = cand.run([slot], checked=checked)
        if ran.problems:
            raise Rejected(f"{when}: {'; '.join(ran.problems)}")
        ref.run([slot])
        self._compare(0, when)
        mutated = guards.mutated_inputs(ref.inputs(slot), cand.inputs(slot))
        if mutated:
            raise Rejected(f"{when}: modifies its inputs in place ({', '.join(mutated)})")

    def _compare(self, index: int, when: str) -> None:
        ref, cand = self.sides["reference"], self.sides["candidate"]
        expected, problems = ref.fetch(index)
        if problems:
            raise CallFailed("reference", Failed(where="call", error="; ".join(problems)))
        assert ref.out is not None
        got, problems = cand.fetch(index, limit=ref.out.size)
        if problems:
            raise Rejected(f"{when}: {'; '.join(problems)}")
        comparison = compare_outputs(expected, got, self.own.tolerances)
        self.worst = merge_worst(self.worst, comparison.max_abs_diff)
        if comparison.incorrect:
            raise Incorrect(f"{when}: {comparison.incorrect}")
        if comparison.slipped:
            raise Rejected(f"{when}: {comparison.slipped}")

    def _correctness(self) -> None:
        for trial in range(self.own.correctness_trials):
            variant = VARIANTS[trial % len(VARIANTS)]
            values = make_inputs(self.module, os_seed(), variant)
            self._call(_TRIAL_SLOT, values, f"trial {trial + 1} ({variant} inputs)")
            self.trials = trial + 1

    def _probes(self, custom_kernel: bool) -> None:
        """Results cached from earlier calls, and the reference's own ops as a kernel."""
        # Same tensors (same pointers), new values: a cache keyed on the tensor is stale.
        values = make_inputs(self.module, os_seed())
        self._prime(values)
        try:
            self._call(_PROBE_SLOT, make_inputs(self.module, os_seed()),
                       "called again on the same tensors with new values")
            # Nearly the same values: one sample of the batch replaced.  A cache keyed on a
            # few of the values returns the old answer, unless its key lies in the replaced
            # sample: so twice, another sample each time, neither at an end of the batch
            # (where such keys usually are), and a key within one sample cannot escape both.
            for near in self._near_duplicates(values):
                self._prime(values)
                self._call(_PROBE_SLOT, near, "called on inputs that differ in one sample")
        except (Incorrect, Rejected) as exc:
            raise Rejected(f"returns results cached from an earlier call ({exc})") from None
        self._kernel_flags(custom_kernel)

    def _prime(self, values: list[Any]) -> None:
        """One unchecked call on both sides: a random op (dropout) then draws as often in
        the reference as in the candidate, and their next outputs still agree."""
        for side in (self.sides["candidate"], self.sides["reference"]):
            side.put(_PROBE_SLOT, values)
            side.run([_PROBE_SLOT])

    def _near_duplicates(self, values: list[Any]) -> list[list[Any]]:
        """``values`` with one sample of the batch replaced, twice, a different sample each
        time (none where the task has no batch-like size constant)."""
        import torch

        constants = size_constants(self.problem_source)
        batch = {v for k, v in constants.items() if is_batch(k) and isinstance(v, int)
                 and v > 1}
        if not batch:
            return []
        other = make_inputs(self.module, os_seed())
        batched = [j for j, (value, fresh) in enumerate(zip(values, other, strict=True))
                   if isinstance(value, torch.Tensor) and value.dim()
                   and value.shape[0] in batch and fresh.shape == value.shape]
        if not batched:
            return []
        size = min(values[j].shape[0] for j in batched)
        inner = range(1, size - 1) if size > 3 else range(size)
        probes = []
        for i in random.sample(inner, 2):  # a batch constant is > 1: two samples at least
            near = list(values)
            for j in batched:
                near[j] = values[j].clone()
                near[j][i] = other[j][i]
            probes.append(near)
        return probes

    def _kernel_flags(self, custom_kernel: bool) -> None:
        """What runs decides: the candidate's ATen compute ops against the reference's."""
        seen = {}
        for role, side in self.sides.items():
            reply = side.ask(Ops(slot=_PROBE_SLOT))
            if not isinstance(reply, OpsSeen):
                if isinstance(reply, Failed):
                    return  # some code cannot run under a dispatch mode: no finding then
                raise ProtocolViolation(f"the {role} answered {type(reply).__name__} to ops")
            seen[role] = reply.ops
        mine, theirs = seen["candidate"], seen["reference"]
        if mine and mine == theirs:
            self.flag("reference_op_only",
                      f"runs the reference's own ops ({', '.join(sorted(mine))})")
        covers = bool(theirs) and all(mine.get(op, 0) >= n for op, n in theirs.items())
        if not custom_kernel:
            self.flag("no_custom_kernel", "no load_inline, Triton or other kernel source")
        elif covers:
            self.flag("no_custom_kernel", "its kernel source does not do the work: it "
                      "dispatches every compute op of the reference itself")

    def _second_shape(self) -> None:
        """Both models at another batch size, where the task has one (a flag, not a verdict)."""
        constants = size_constants(self.problem_source)
        name = next((n for n in constants if is_batch(n) and isinstance(constants[n], int)),
                    None)
        if name is None:
            return
        value = int(constants[name]) // 2 if constants[name] > 1 else 2
        ref, cand = self.sides["reference"], self.sides["candidate"]
        try:
            alt = load_module(apply_sizes(self.problem_source, {name: value}),
                              "kbtool_reference_alt", self.problem_file)
            values = make_inputs(alt, os_seed())
            ref.expect(ref.ask(Reshape(sizes={name: value})), Done)
            ref.put(_ALT_SLOT, values)
            ref.run([_ALT_SLOT])
        except Exception:
            return  # the task does not work at another size either
        try:
            cand.expect(cand.ask(Reshape(sizes={name: value})), Done)
            cand.put(_ALT_SLOT, values)
            cand.run([_ALT_SLOT])
            self._compare(0, f"with {name}={value}")
        except (Incorrect, Rejected, CallFailed, RunnerFailed, ProtocolViolation) as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            self.flag("fails_other_shape", f"with {name}={value}: {lines[-1]}")

    # -- timing ---------------------------------------------------------------------------------
    def _window(self, side: Side, slots: list[int], model: Mode,
                ping: Window | None = None) -> Window:
        if type(self.timer).before_window is not Timer.before_window:
            side.expect(side.ask(Prepare()), Done)
        runner = side.runner
        cpu0 = runner.cpu_ns(exited=False)
        start = time.perf_counter_ns()
        ran = side.run(slots, model)
        wall = time.perf_counter_ns() - start
        cpu = runner.cpu_ns(exited=False) - cpu0
        if ran.problems and side.role == "candidate":
            raise Rejected(f"timing: {'; '.join(ran.problems)}")
        n = max(len(slots), 1)
        cost_wall, cost_cpu = (ping.wall_ns, ping.cpu_ns) if ping else (0, 0)
        return Window(max(wall - cost_wall, 1000) / 1e6 / n, max(cpu - cost_cpu, 1000) / 1e6 / n,
                      wall, cpu)

    def _timing(self, mode: Mode, threads: int) -> dict[str, Any]:
        ref, cand = self.sides["reference"], self.sides["candidate"]
        models: dict[str, Mode] = {"reference": mode, "candidate": "eager"}
        settings = TimingSettings.from_config(self.config)
        paired = self.config.speedup_from == "paired"
        arms = ["reference", "candidate"] if paired else ["candidate"]

        # The pool: input sets from OS seeds, as many as fit the budgets.
        pool_s = min(POOL_GEN_S, POOL_SHARE * settings.max_timing_s)
        started = time.perf_counter()
        slots: list[int] = []
        while True:
            values = make_inputs(self.module, os_seed())
            for side in (ref, cand):
                side.put(len(slots), values)
            slots.append(len(slots))
            spent = time.perf_counter() - started
            per_set = spent / len(slots)
            set_bytes = layout_of(values).size
            if len(slots) >= MAX_POOL or (len(slots) >= 2 and (
                    spent + per_set > pool_s
                    or (len(slots) + 1) * 2 * set_bytes > POOL_BYTES)):
                break
        gen_s = (time.perf_counter() - started) / len(slots)

        # Warm-up, the IPC cost of an empty window, and the calls a window holds.
        for _ in range(max(1, settings.warmup_trials)):
            for arm in arms:
                self._window(self.sides[arm], [slots[0]], models[arm])
        pings = {}
        for arm in arms:
            empty = [self._window(self.sides[arm], [], models[arm]) for _ in range(PINGS)]
            pings[arm] = Window(0.0, 0.0, int(statistics.median(w.wall_ns for w in empty)),
                                int(statistics.median(w.cpu_ns for w in empty)))
        # Calls per window: from single calls (IPC included: never more calls than that
        # allows), and no more outputs kept at once (the runner keeps a window's outputs
        # until one is checked) than KEEP_BYTES.
        # One thread on a CPU (a busy machine, see usable_threads): the time is the runners'
        # CPU time, which the other work on the machine does not stretch; else the judge's
        # wall clock around each window.
        clock = "cpu" if self.config.device == "cpu" and threads == 1 else "wall"
        one = {arm: statistics.median(self._window(self.sides[arm], [s], models[arm]).ms(clock)
                                      for s in slots[:3]) for arm in arms}
        assert ref.out is not None
        calls = max(1, min(MAX_CALLS, KEEP_BYTES // ref.out.size,
                           math.ceil(WINDOW_MS / max(min(one.values()), 1e-3))))
        if calls > 1:  # a window's outputs, kept together, take memory not yet touched
            for arm in arms:
                self._window(self.sides[arm], [slots[i % len(slots)] for i in range(calls)],
                             models[arm])

        def sequence() -> list[int]:
            seq: list[int] = []
            for _ in range(calls):
                choices = [s for s in slots if not seq or s != seq[-1]] or slots
                seq.append(random.choice(choices))
            return seq

        windows: dict[str, list[Window]] = {arm: [] for arm in arms}
        cpu_start = {arm: self.sides[arm].runner.cpu_ns() for arm in arms}
        refresh_s = [0.0]
        last: list[list[int]] = []

        def run_round(index: int) -> dict[str, float]:
            seq = sequence()
            last[:] = [seq]
            times = {}
            for arm in rotation(arms, index):
                w = self._window(self.sides[arm], seq, models[arm], pings[arm])
                windows[arm].append(w)
                times[arm] = w.ms(clock)
            if index == 0 or random.random() < CHECK_SHARE:
                self._timed_check(seq, index, paired, models["reference"])
            # Fresh values for some sets, outside the windows, within the refresh budget.
            spent = sum(w.wall_ns for ws in windows.values() for w in ws) / 1e9
            for _ in range(max(1, len(slots) // 2)):
                if refresh_s[0] + gen_s > REFRESH_SHARE * spent:
                    break
                t0 = time.perf_counter()
                slot = random.choice(slots)
                values = make_inputs(self.module, os_seed())
                for side in (ref, cand):
                    side.put(slot, values)
                refresh_s[0] += time.perf_counter() - t0
            return times

        # min_trials is kept, up to a hard cap: a very slow call gets fewer rounds, and says so.
        per_round_s = sum(one.values()) * calls / 1000
        cap_s = max(settings.max_timing_s, self.deadline[0] - time.monotonic() - 1.0)
        cap_s = min(cap_s, 5 * 2 * settings.max_timing_s)
        min_rounds = max(8, settings.min_trials)
        few = per_round_s * min_rounds > cap_s
        rule = StopRule(min_rounds=max(3, min(min_rounds, int(cap_s / max(per_round_s, 1e-9))))
                        if few else min_rounds,
                        max_rounds=max(min_rounds, min(settings.max_trials, 400)),
                        target_rel_ci=settings.target_rel_ci,
                        max_s=2 * settings.max_timing_s if paired else settings.max_timing_s)
        before = machine_state()
        if paired:
            rounds = run_rounds(run_round, [("reference", "candidate")], rule)
            stop = "few_trials" if few and rounds.stop_reason != "converged" else \
                rounds.stop_reason
        else:
            samples, stop = adaptive(lambda: run_round(len(windows["candidate"]))["candidate"],
                                     settings)
            rounds = Rounds([{"candidate": s} for s in samples], stop, 0.0)
        after = machine_state()
        self._timed_check(last[0], len(rounds.times) - 1, paired, models["reference"])
        self._hidden_work(windows, cpu_start)
        if clock == "cpu" and paired and self._waits(windows):
            clock = "wall"
            rounds = Rounds([{arm: ws[i].wall_ms for arm, ws in windows.items()}
                             for i in range(len(rounds.times))], rounds.stop_reason,
                            rounds.elapsed_s)
        result = self._timing_result(rounds, rule, windows, stop, before, after, threads, calls,
                                     paired)
        result["noise"]["clock"] = clock
        return result

    def _waits(self, windows: dict[str, list[Window]]) -> bool:
        """Whether the candidate's calls wait (sleep, block) where the reference's compute:
        its CPU time would then understate its time, and the wall clock decides."""
        share = {arm: sum(w.cpu_ns for w in ws) / max(sum(w.wall_ns for w in ws), 1)
                 for arm, ws in windows.items()}
        if share["candidate"] >= 0.5 * share["reference"]:
            return False
        self.flag("waits", f"its calls ran on a CPU {share['candidate']:.0%} of their time (the "
                  f"reference's {share['reference']:.0%}): timed by the wall clock")
        return True

    def _timed_check(self, seq: list[int], index: int, paired: bool, model: Mode) -> None:
        """Check one call, at random, of the round's windows (both sides ran the same inputs
        in the same order; without pairing the reference runs them now, untimed)."""
        if not paired:
            self.sides["reference"].run(seq, model)
        call = random.randrange(len(seq))
        try:
            self._compare(call, f"call {call + 1} of timing round {index + 1}")
        except (Incorrect, Rejected) as exc:
            raise Rejected(f"its results while it was timed are wrong ({exc})") from None

    def _hidden_work(self, windows: dict[str, list[Window]], cpu_start: dict[str, int]) -> None:
        if "reference" not in windows:
            return
        outside = {}
        for arm, ws in windows.items():
            total = self.sides[arm].runner.cpu_ns() - cpu_start[arm]
            outside[arm] = (total - sum(w.cpu_ns for w in ws)) / 1e6
        inside_ms = sum(w.cpu_ns for w in windows["candidate"]) / 1e6
        hidden = outside["candidate"] - outside["reference"]
        if hidden > max(HIDDEN_MIN_MS, HIDDEN_SHARE * inside_ms):
            raise Rejected(f"works outside its timed windows: {outside['candidate']:.0f} ms of "
                           f"CPU between its calls (the reference: {outside['reference']:.0f} "
                           f"ms; inside its windows: {inside_ms:.0f} ms)")

    def _timing_result(self, rounds: Rounds, rule: StopRule, windows: dict[str, list[Window]],
                       stop: str, before: Any, after: Any, threads: int, calls: int,
                       paired: bool) -> dict[str, Any]:
        def stats(arm: str) -> TimingStats:
            return TimingStats(timer=self.timer.name, stop_reason=stop,
                               **summarize(rounds.arm(arm)))

        busy = {arm: (sum(w.cpu_ns for w in ws) / 1e9, sum(w.wall_ns for w in ws) / 1e9)
                for arm, ws in windows.items()}
        out: dict[str, Any] = {"timing": stats("candidate").model_dump(),
                               "runtime_ms": stats("candidate").median_ms}
        if paired:
            ratio = rounds.ratio("reference", "candidate", rule)
            # The rounds' interval, widened by what differs between two processes running
            # the same code: a null candidate is then never "significantly faster".
            margin = 1 + self.own.process_margin
            low, high = ratio.low / margin, ratio.high * margin
            out.update(baseline=stats("reference").model_dump(),
                       baseline_ms=stats("reference").median_ms, speedup=ratio.estimate,
                       speedup_ci=[low, high], significant=low > 1.0)
            why = (f"the speedup's interval is +-{ratio.rel_halfwidth:.1%}, not "
                   f"+-{rule.target_rel_ci:.1%}, after {len(rounds.times)} rounds ({stop})")
        else:
            cand = stats("candidate")
            half = (cand.ci95_high_ms - cand.ci95_low_ms) / 2 / cand.median_ms
            why = (f"the runtime's interval is +-{half:.1%}, not +-{rule.target_rel_ci:.1%}, "
                   f"after {cand.trials} windows ({stop})")
        noise: Noise = assess(before, after, converged=stop == "converged", why=why, busy=busy,
                              samples={arm: rounds.arm(arm) for arm in windows},
                              threads=threads)
        out.update(noisy=noise.noisy, noise={**noise.model_dump(), "calls_per_window": calls})
        return out
