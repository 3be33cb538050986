"""The KernelBench judge: checks and times a candidate without ever running its code.

The judge is the kind's ``check``, in an isolated child of the zygote.  Before it runs a
torch op it forks two runners (``runner``): one loads the reference ``Model``, the other the
candidate's ``ModelNew``, each in namespaces of its own.  Everything that decides a verdict
happens here, in a process the candidate cannot reach, and nothing the candidate controls
decides what is timed, counted or compared:

- inputs come from the problem's ``get_inputs()`` under seeds drawn from the OS; every timed
  call reads a set no earlier call has read (fresh sets each round, written into the
  candidate's buffers just before its window), so no answer can be remembered;
- a window ends when the runner says where its outputs lie in its memory; the judge then
  reads them itself (``kbtool.sandbox.peek``): no request asks the candidate's process for
  its outputs, so nothing it does afterwards can change what was timed;
- every timed call's outputs are compared with the reference's at random places the judge
  draws, and one call of every round in full;
- the reference runner's outputs are the expected ones; the comparison is made here;
- status, stage times and time limits are the judge's, by its own clock; every message a
  runner sends is validated, and a violation rejects the candidate;
- timing is paired: reference and candidate windows alternate, round by round, under the
  device lock, timed by the judge's clock around each window (the runner synchronises the
  whole device inside it); the speedup is the ratio of the pairs with its interval
  (``kbtool.timing.compare``), the loop stops when that interval is tight; every
  calibration (the cost of an empty window, the calls a window holds) comes from the
  reference alone;
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from kbtool.config import Config
from kbtool.evaluation.result import TimingStats
from kbtool.sandbox import devicelock
from kbtool.sandbox.channel import ProtocolViolation, SharedBuffer
from kbtool.sandbox.isolation import Reporter
from kbtool.sandbox.namespaces import SandboxPolicy
from kbtool.sandbox.peek import Unreadable, read_into
from kbtool.sandbox.runner import Runner, RunnerFailed, start_runner
from kbtool.task.model import Task
from kbtool.timing.base import Timer, TimingSettings, adaptive
from kbtool.timing.compare import Rounds, StopRule, rotation, run_rounds
from kbtool.timing.noise import Noise, assess, machine_state, usable_threads
from kbtool.timing.stats import relative_ci_halfwidth, summarize
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
    Load,
    Mode,
    Ops,
    OpsSeen,
    Output,
    Prepare,
    Ran,
    Refresh,
    Reshape,
    Run,
    Stop,
    TensorSpec,
)
from kbtool_plugins.kernelbench.runner import align, dtype_of, serve, view
from kbtool_plugins.kernelbench.settings import KernelBenchSettings
from kbtool_plugins.kernelbench.shrink import is_batch
from kbtool_plugins.kernelbench.static_checks import analyse

# Input distributions, cycled over the correctness trials (trial 0 is the task's own).
VARIANTS = ("plain", "scaled", "spiky")
WINDOW_MS = 10.0          # a timed window holds calls for about this long (IPC cost << 1%)
MAX_CALLS = 256           # calls in one window at most
MAX_DESCRIBED = 1024      # outputs one window's reply describes at most (calls x outputs)
POOL_BYTES = 192 * 2**20  # one round's fresh input sets (the judge's + one per runner) at most
KEEP_BYTES = 64 * 2**20   # outputs of one window's calls kept for checking at most
PINGS = 5                 # empty windows of the reference: the IPC cost a window includes
# Every timed call's outputs are compared at SAMPLE_RUNS runs of SAMPLE_RUN elements each,
# at places drawn after the window (all of an output that small): a call wrong in a share f
# of its values passes with probability at most (1 - f) ** SAMPLE_RUNS (docs/integrity.md).
SAMPLE_RUNS, SAMPLE_RUN = 128, 32
FULL_SHARE = 0.25         # rounds (besides the first) with one call compared in full
# Windows on sets seen before against never-seen ones: the candidate's gain on repeats,
# relative to the reference's, below this factor is reported (flag ``reuses_results``).
REPEAT_ROUNDS, REUSE_FACTOR = 2, 0.6
# Work outside the timed windows beyond the reference's: this much CPU, or this share of the
# candidate's CPU inside its windows, whichever is larger, rejects it.
HIDDEN_MIN_MS, HIDDEN_SHARE = 60.0, 0.25
# The judge reports before the zygote's hard limit ends it.
_DEADLINE_MARGIN_S = 1.0
# Slots: correctness trials and probes use the first two; the second shape its own.
_TRIAL_SLOT, _PROBE_SLOT, _ALT_SLOT = 0, 1, 4095


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
    """One runner as the judge uses it: its input buffers, and the process whose memory
    holds its outputs."""

    role: str
    runner: Runner[Any, Any]
    deadline: list[float]
    buffers: dict[int, tuple[SharedBuffer, Layout]] = field(default_factory=dict)
    pid: int = 0  # the process that runs the model (known once it has loaded)
    inside_ns: int = 0  # CPU time of its processes inside timed windows, so far

    def ask(self, request: Any, fds: tuple[int, ...] = ()) -> Any:
        return self.runner.ask(request, self.deadline[0], fds)

    def write(self, slot: int, values: list[Any]) -> bool:
        """Write ``values`` into ``slot``; True when the runner must be told (a refresh of
        the same tensors), False when it got a new buffer (an attach, told at once)."""
        layout = layout_of(values)
        held = self.buffers.get(slot)
        if held is not None and held[1] == layout:
            write(held[0], layout, values)
            return True
        buffer = SharedBuffer(layout.size)
        write(buffer, layout, values)
        if held is not None:
            held[0].close()
        self.buffers[slot] = (buffer, layout)
        self.expect(self.ask(Attach(slot=slot, size=layout.size, args=layout.args),
                             (buffer.fd,)), Done)
        return False

    def put(self, sets: dict[int, list[Any]]) -> None:
        """Give this runner each slot's ``values`` (one refresh for all of them)."""
        refresh = [slot for slot, values in sets.items() if self.write(slot, values)]
        if refresh:
            self.expect(self.ask(Refresh(slots=refresh)), Done)

    def inputs(self, slot: int) -> list[Any]:
        """The slot's inputs as the runner has them now (on the CPU: the very memory)."""
        buffer, layout = self.buffers[slot]
        return [view(buffer, a.tensor) if a.tensor is not None else a.value
                for a in layout.args]

    def run(self, slots: list[int], model: Mode = "eager", checked: bool = False,
            keep_rng: bool = False) -> Ran:
        reply = self.expect(self.ask(Run(slots=slots, model=model, checked=checked,
                                         keep_rng=keep_rng)), Ran)
        if reply.calls != len(slots) or len(reply.outputs) != len(slots):
            raise ProtocolViolation(f"the {self.role} ran {reply.calls} calls and described "
                                    f"{len(reply.outputs)} of {len(slots)}")
        return reply

    def read(self, outputs: list[Output]) -> list[Any]:
        """One call's outputs, read whole from the runner's memory by this process."""
        import torch

        tensors = []
        for out in outputs:
            t = torch.empty(out.shape, dtype=dtype_of(out.dtype))
            self._read(np.array([[out.address, t.numel() * t.element_size()]]), t)
            tensors.append(t)
        return tensors

    def read_places(self, calls: list[list[Output]], places: list[np.ndarray | None]
                    ) -> list[Any]:
        """Every call's outputs at ``places`` (per output: the first elements of runs of
        ``SAMPLE_RUN``; None: all of it): per output, a tensor of one row per call."""
        import torch

        rows = []
        for j, starts in enumerate(places):
            dtype = dtype_of(calls[0][j].dtype)
            width = math.prod(calls[0][j].shape) if starts is None else len(starts) * SAMPLE_RUN
            t = torch.empty((len(calls), width), dtype=dtype)
            size = t.element_size()
            for i, outs in enumerate(calls):
                address = outs[j].address
                spans = np.array([[address, width * size]]) if starts is None else \
                    np.stack([address + starts * size, np.full(len(starts), SAMPLE_RUN * size)], 1)
                self._read(spans, t[i])
            rows.append(t)
        return rows

    def _read(self, spans: np.ndarray, into: Any) -> None:
        if not into.numel():
            return
        try:
            read_into(self.pid, spans, into.data_ptr())
        except Unreadable as exc:
            raise ProtocolViolation(f"the {self.role}'s outputs cannot be read where it says "
                                    f"they are ({exc})") from None

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


def sample_places(outputs: list[Output], rng: random.Random) -> list[np.ndarray | None]:
    """Random places to compare each output at: the first elements of ``SAMPLE_RUNS`` runs
    of ``SAMPLE_RUN`` (None: the output is that small, compare all of it)."""
    places: list[np.ndarray | None] = []
    for out in outputs:
        n = math.prod(out.shape)
        if n <= SAMPLE_RUNS * SAMPLE_RUN:
            places.append(None)
        else:
            starts = rng.sample(range(n - SAMPLE_RUN + 1), SAMPLE_RUNS)
            places.append(np.array(sorted(starts), dtype=np.uint64))
    return places


def same_values(a: list[Any], b: list[Any]) -> bool:
    import torch

    return all(torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
               for x, y in zip(a, b, strict=True))


def output_bytes(outputs: list[Output]) -> int:
    return sum(math.prod(o.shape) * dtype_of(o.dtype).itemsize for o in outputs)


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


@dataclass(frozen=True)
class Arm:
    """What one timed arm runs: a runner's model under a mode."""

    side: str      # "reference" or "candidate"
    model: Mode
    baseline: str | None = None  # the baseline it stands for (reference arms)
    extra: bool = False          # another baseline than the evaluated one: not compared


@dataclass(frozen=True)
class Plan:
    """One timing's set-up, calibrated on the reference: the arms, the slots a window's
    calls read (one fresh set each), the cost of an empty window, the clock, the
    reference's time per call, the outputs a call returns, and where fresh sets come from."""

    arms: dict[str, Arm]
    timed: list[str]
    slots: list[int]
    ping: Window
    clock: str
    one_ms: float
    described: list[Output]
    feed: Callable[[], list[list[Any]]]


class Judge:
    """One candidate's check (see the module docstring)."""

    def __init__(self, task: Task, solution: Path, config: Config, timer: Timer,
                 report: Reporter, timing_only: bool = False) -> None:
        self.task, self.solution, self.config, self.timer = task, solution, config, timer
        # The reference timed against itself (the kind's ``baseline``): one correctness
        # trial, no probes, no second shape; the timing exactly as in a check.
        self.timing_only = timing_only
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
        self.timing_cpu: int | None = None  # the CPU both runners are timed on, if one
        # The judge's own draws (which places and calls are compared): not Python's global
        # generator, which a forked judge shares with nobody, but seeded from the OS anyway.
        self.rng = random.Random(secrets.randbits(64))

    def flag(self, name: str, finding: str) -> None:
        if name not in self.flags:
            self.flags.append(name)
            self.findings.append(f"{name}: {finding}")

    # -- the verdict --------------------------------------------------------------------------
    def run(self, problem_source: str, problem_file: str) -> dict[str, Any]:
        """The verdict.  What the candidate did decides a status; an exception of the judge's
        own (kbtool's fault) goes up to the evaluator, never into a candidate's verdict."""
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
        if not self.sides["candidate"].runner.counted:
            self.flag("uncounted", "no cgroup could be made for the candidate's runner here: "
                      "work it moves out of the PID namespace is neither counted nor limited")

    def _arms(self, mode: Mode) -> dict[str, Arm]:
        """The timed arms: the candidate, and the reference under the evaluated baseline
        first, then every other baseline the run asks for (``baselines``), all paired."""
        wanted: list[Mode] = [mode]
        for name in self.config.baselines or []:
            if name in ("eager", "compile") and name not in wanted:
                wanted.append(cast(Mode, name))
        arms = {"reference" if m == mode else f"reference:{m}": Arm("reference", m, m, m != mode)
                for m in wanted}
        return {**arms, "candidate": Arm("candidate", "eager")}

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
        arms = self._arms(mode)
        # Single-threaded runners share one CPU: neither gets a core the other does not (the
        # CPU clock then compares like with like), and they take turns anyway.
        cpu = max(os.sched_getaffinity(0)) if device == "cpu" and threads == 1 else None
        self.timing_cpu = cpu
        load = Load(problem_bytes=0, problem_file=self.problem_file, seed=os_seed(),
                    device=device, timer=self.timer.name, threads=threads, cpu=cpu,
                    compile_mode=self.own.compile_mode)
        ref, cand = self.sides["reference"], self.sides["candidate"]
        # Both load at once: compiling one does not wait for the other.  The sources travel
        # in a buffer of their own (a datagram holds a few hundred KB at most).
        problem = self.problem_source.encode()
        solution = candidate_source.encode()
        for side, update, data in (
                (ref, {"modes": sorted({a.model for a in arms.values() if a.side == "reference"})},
                 problem),
                (cand, {"solution_bytes": len(solution), "solution_file": str(self.solution)},
                 problem + solution)):
            sources = SharedBuffer(len(data))
            sources.map[:len(data)] = data
            side.runner.channel.send(load.model_copy(update={
                "problem_bytes": len(problem), **update}), (sources.fd,))
            sources.close()
        ref.expect(ref.runner.wait(self.deadline[0]), Done)
        loaded = cand.expect(cand.runner.wait(self.deadline[0]), Done)
        if loaded.problems:
            raise Rejected(f"loading {'; '.join(loaded.problems)}")
        for side in (ref, cand):
            side.pid = side.runner.main_pid()
        self.module = load_module(self.problem_source, "kbtool_reference", self.problem_file)

        self._stage("device_wait")
        waited = time.monotonic()
        devicelock.acquire(self.config)
        self.deadline[0] += time.monotonic() - waited  # the device's time, not the candidate's
        self._stage("correctness")
        self._correctness()
        if not self.timing_only:
            self._probes(custom_kernel)

        self._stage("timing")
        timing = self._timing(arms, threads)
        if not self.timing_only:
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
            side.put({slot: values})
        ran = cand.run([slot], checked=checked)
        if ran.problems:
            raise Rejected(f"{when}: {'; '.join(ran.problems)}")
        expected = ref.run([slot])
        self._compare(expected.outputs[0], ran.outputs[0], when)
        mutated = guards.mutated_inputs(ref.inputs(slot), cand.inputs(slot))
        if mutated:
            raise Rejected(f"{when}: modifies its inputs in place ({', '.join(mutated)})")

    def _matching(self, expected: list[Output], got: list[Output], when: str) -> None:
        """The candidate's outputs have the reference's count, shapes and dtypes (checked
        before anything is read: the judge allocates only what the reference's need)."""
        if len(got) != len(expected):
            raise Incorrect(f"{when}: candidate returned {len(got)} outputs, reference "
                            f"{len(expected)}")
        for i, (r, c) in enumerate(zip(expected, got, strict=True)):
            if r.shape != c.shape:
                raise Incorrect(f"{when}: output {i}: shape {tuple(c.shape)}, expected "
                                f"{tuple(r.shape)}")
            if r.dtype != c.dtype:
                raise Incorrect(f"{when}: output {i}: dtype {c.dtype}, expected {r.dtype}")

    def _compare(self, expected: list[Output], got: list[Output], when: str) -> None:
        """One call's outputs, read whole from both runners, compared."""
        self._matching(expected, got, when)
        self._verdict(self.sides["reference"].read(expected),
                      self.sides["candidate"].read(got), when)

    def _verdict(self, expected: list[Any], got: list[Any], when: str) -> None:
        comparison = compare_outputs(expected, got, self.own.tolerances)
        self.worst = merge_worst(self.worst, comparison.max_abs_diff)
        if comparison.incorrect:
            raise Incorrect(f"{when}: {comparison.incorrect}")
        if comparison.slipped:
            raise Rejected(f"{when}: {comparison.slipped}")

    def _correctness(self) -> None:
        for trial in range(1 if self.timing_only else self.own.correctness_trials):
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
            side.put({_PROBE_SLOT: values})
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
        for i in self.rng.sample(inner, 2):  # a batch constant is > 1: two samples at least
            near = list(values)
            for j in batched:
                near[j] = values[j].clone()
                near[j][i] = other[j][i]
            probes.append(near)
        return probes

    def _kernel_flags(self, custom_kernel: bool) -> None:
        """What runs decides: the ATen compute ops each side dispatches, and the share of its
        call's time spent in them.  A recording that fails or is refused sets the flag
        (fail closed): "a custom kernel did the work" must be shown, not assumed."""
        seen: dict[str, OpsSeen] = {}
        for role, side in self.sides.items():
            reply = side.ask(Ops(slot=_PROBE_SLOT))
            if isinstance(reply, Failed) and role == "candidate":
                self.flag("no_custom_kernel", "its ATen ops could not be recorded (a call "
                          "under the recorder failed), so no custom kernel was shown to work")
                return
            seen[role] = side.expect(reply, OpsSeen)
        mine, theirs = seen["candidate"], seen["reference"]
        if mine.ops and mine.ops == theirs.ops:
            self.flag("reference_op_only",
                      f"runs the reference's own ops ({', '.join(sorted(mine.ops))})")
        if not custom_kernel:
            self.flag("no_custom_kernel", "no load_inline, Triton or other kernel source")
        elif mine.aten_share >= 0.5 * max(theirs.aten_share, 0.1):
            # The reference is all ATen: its share is what "ATen did the work" looks like
            # under the recorder's own overhead.
            self.flag("no_custom_kernel", f"its kernel source does not do the work: "
                      f"{mine.aten_share:.0%} of its call's time is in ATen compute ops "
                      f"({', '.join(sorted(mine.ops)) or 'none'}; the reference's "
                      f"{theirs.aten_share:.0%})")

    def _second_shape(self) -> None:
        """Both models at another batch size, where the task has one (a flag, not a verdict).
        The sizes equal to the batch are halved with it where the reference needs that (a
        shape that broadcasts against the batch: HingeLoss's ``input_shape[0]``)."""
        constants = size_constants(self.problem_source)
        name = next((n for n in constants if is_batch(n) and isinstance(constants[n], int)),
                    None)
        if name is None:
            return
        batch = constants[name]
        value = int(batch) // 2 if batch > 1 else 2
        ref, cand = self.sides["reference"], self.sides["candidate"]
        alone: dict[str, int | float] = {name: value}
        together: dict[str, int | float] = {n: value for n, v in constants.items()
                                            if v == batch and isinstance(v, int)}
        for sizes in (alone, together):
            try:
                alt = load_module(apply_sizes(self.problem_source, sizes),
                                  "kbtool_reference_alt", self.problem_file)
                values = make_inputs(alt, os_seed())
                ref.expect(ref.ask(Reshape(sizes=sizes)), Done)
                ref.put({_ALT_SLOT: values})
                expected = ref.run([_ALT_SLOT])
                break
            except Exception:
                continue  # the task does not work at these sizes
        else:
            return
        where = ", ".join(f"{n}={v}" for n, v in sizes.items())
        try:
            cand.expect(cand.ask(Reshape(sizes=sizes)), Done)
            cand.put({_ALT_SLOT: values})
            got = cand.run([_ALT_SLOT])
            self._compare(expected.outputs[0], got.outputs[0], f"with {where}")
        except (Incorrect, Rejected, CallFailed, RunnerFailed, ProtocolViolation) as exc:
            lines = str(exc).strip().splitlines() or [type(exc).__name__]
            self.flag("fails_other_shape", f"with {where}: {lines[-1]}")

    # -- timing ---------------------------------------------------------------------------------
    def _window(self, side: Side, slots: list[int], model: Mode,
                ping: Window | None = None, keep_rng: bool = False) -> tuple[Window, Ran]:
        if type(self.timer).before_window is not Timer.before_window:
            side.expect(side.ask(Prepare()), Done)
        runner = side.runner
        cpu0 = runner.cpu_ns(exited=False)
        start = time.perf_counter_ns()
        ran = side.run(slots, model, keep_rng=keep_rng)
        wall = time.perf_counter_ns() - start
        cpu = runner.cpu_ns(exited=False) - cpu0
        side.inside_ns += cpu
        if ran.problems and side.role == "candidate":
            raise Rejected(f"timing: {'; '.join(ran.problems)}")
        n = max(len(slots), 1)
        cost_wall, cost_cpu = (ping.wall_ns, ping.cpu_ns) if ping else (0, 0)
        return Window(max(wall - cost_wall, 1000) / 1e6 / n,
                      max(cpu - cost_cpu, 1000) / 1e6 / n, wall, cpu), ran

    def _fresh(self, count: int) -> list[list[Any]]:
        """``count`` input sets no call has seen (``get_inputs()`` under seeds from the OS)."""
        return [make_inputs(self.module, os_seed()) for _ in range(count)]

    @contextlib.contextmanager
    def _feed(self, count: int) -> Iterator[Callable[[], list[list[Any]]]]:
        """Batches of ``count`` fresh sets, each made on a thread of the judge's while the
        runners work on the one before (making sets can take longer than using them)."""
        others = os.sched_getaffinity(0) - {self.timing_cpu}

        def elsewhere() -> None:  # not on the runners' CPU, where the calls are timed
            if self.timing_cpu is not None and others:
                os.sched_setaffinity(0, others)  # this thread only

        pool = ThreadPoolExecutor(1, thread_name_prefix="kbtool-inputs", initializer=elsewhere)
        pending = [pool.submit(self._fresh, count)]

        def take() -> list[list[Any]]:
            sets = pending[0].result()
            pending[0] = pool.submit(self._fresh, count)
            return sets

        try:
            yield take
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _timing(self, arms: dict[str, Arm], threads: int) -> dict[str, Any]:
        ref, cand = self.sides["reference"], self.sides["candidate"]
        settings = TimingSettings.from_config(self.config)
        timed = list(arms) if self.config.speedup_from == "paired" else ["candidate"]
        # One thread on a CPU (a busy machine, see usable_threads): the time is the runners'
        # CPU time, which the other work on the machine does not stretch; else the judge's
        # wall clock around each window.
        clock = "cpu" if self.config.device == "cpu" and threads == 1 else "wall"
        # Calibrations come from the reference alone: its empty windows are the IPC cost
        # taken out of every window, its single calls decide the calls a window holds; no
        # reply of the candidate's can move them.
        started = time.perf_counter()
        first, second = self._fresh(2)
        make_ms = (time.perf_counter() - started) * 1000 / 2  # the judge's own time
        if same_values(first, second):
            self.flag("fixed_inputs", "get_inputs() returns the same values under every seed: "
                      "no input set can be new, and a candidate may remember its answers")
        set_bytes = layout_of(first).size
        for side in (ref, cand):
            side.put({0: first})
        for _ in range(max(1, settings.warmup_trials)):
            for arm in timed:
                self._window(self.sides[arms[arm].side], [0], arms[arm].model,
                             keep_rng=arms[arm].extra)
        empty = [self._window(ref, [], "eager")[0] for _ in range(PINGS)]
        ping = Window(0.0, 0.0, int(statistics.median(w.wall_ns for w in empty)),
                      int(statistics.median(w.cpu_ns for w in empty)))
        singles = []
        for _ in range(3):  # the candidate calls as often (random ops keep drawing alike)
            singles.append(self._window(ref, [0], "eager", ping))
            self._window(cand, [0], "eager")
        one_ms = statistics.median(w.ms(clock) for w, _ in singles)
        described = singles[0][1].outputs[0]
        out_bytes = max(output_bytes(described), 1)
        # Every call of a window reads its own set, fresh this round: the judge's copy and
        # each runner's take memory, and the outputs of a window are kept until read.
        # Both within a share of the memory limit, which holds the judge's process too.
        share = self.config.memory_limit_mb * 2**20 // 8
        # A window holds about WINDOW_MS of calls, or of making their fresh sets where that
        # takes longer (then more, shorter rounds fit the same time: a round's noise hardly
        # depends on its calls).
        calls = max(1, min(MAX_CALLS, math.ceil(WINDOW_MS / max(one_ms, make_ms, 1e-3)),
                           min(POOL_BYTES, share) // max(4 * set_bytes, 1),
                           min(KEEP_BYTES, share) // out_bytes,
                           MAX_DESCRIBED // max(len(described), 1)))
        with self._feed(calls) as feed:
            plan = Plan(arms, timed, list(range(calls)), ping, clock, one_ms, described, feed)
            return self._rounds(plan, threads, settings)

    def _rounds(self, plan: Plan, threads: int, settings: TimingSettings) -> dict[str, Any]:
        paired = self.config.speedup_from == "paired"
        if len(plan.slots) > 1:  # a window's outputs, kept together, take memory not yet touched
            sets = plan.feed()
            for side in self.sides.values():
                side.put(dict(zip(plan.slots, sets, strict=True)))
            for arm in plan.timed:
                spec = plan.arms[arm]
                self._window(self.sides[spec.side], plan.slots, spec.model, keep_rng=spec.extra)

        windows: dict[str, list[Window]] = {arm: [] for arm in plan.timed}
        cpu_start = {role: (side.runner.cpu_ns(), side.inside_ns)
                     for role, side in self.sides.items()}

        def run_round(index: int) -> dict[str, float]:
            done, _ = self._round(plan, index, rotation(plan.timed, index))
            for arm, w in done.items():
                windows[arm].append(w)
            return {arm: w.ms(plan.clock) for arm, w in done.items()}

        # min_trials is kept, up to a hard cap: a very slow call gets fewer rounds, and says so.
        per_round_s = plan.one_ms * len(plan.timed) * len(plan.slots) / 1000
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
            pairs = [(arm, "candidate") for arm in plan.timed if plan.arms[arm].side == "reference"]
            # The reference timed for itself (a baseline): until its own median is known
            # to target_rel_ci, as a baseline always was, not the ratio to its copy.
            alone = (lambda r: relative_ci_halfwidth(r.arm("reference")) <=
                     settings.target_rel_ci) if self.timing_only else None
            rounds = run_rounds(run_round, pairs, rule, converged=alone)
            stop = "few_trials" if few and rounds.stop_reason != "converged" else \
                rounds.stop_reason
        else:
            samples, stop = adaptive(lambda: run_round(len(windows["candidate"]))["candidate"],
                                     settings)
            rounds = Rounds([{"candidate": s} for s in samples], stop, 0.0)
        after = machine_state()
        if paired:
            self._repeats(plan)
        self._hidden_work(windows, cpu_start)
        clock = plan.clock
        if clock == "cpu" and paired and self._waits(windows):
            clock = "wall"
            rounds = Rounds([{arm: ws[i].wall_ms for arm, ws in windows.items()}
                             for i in range(len(rounds.times))], rounds.stop_reason,
                            rounds.elapsed_s)
        result = self._timing_result(rounds, rule, windows, plan.arms, stop, before, after,
                                     threads, len(plan.slots), paired)
        result["noise"]["clock"] = clock
        return result

    def _round(self, plan: Plan, index: int, order: list[str],
               repeat: list[list[Any]] | None = None) -> tuple[dict[str, Window], list[list[Any]]]:
        """Every arm's window on one fresh set per call (or ``repeat``'s, seen before), each
        runner given them just before its first window of the round; every call compared."""
        ref, cand = self.sides["reference"], self.sides["candidate"]
        slots = plan.slots
        sets = repeat or plan.feed()
        seq = self.rng.sample(slots, len(slots))
        # The places compared (secret to the runners) and, in some rounds, the call
        # compared in full.
        places = sample_places(plan.described, self.rng)
        full = self.rng.randrange(len(slots)) \
            if index == 0 or self.rng.random() < FULL_SHARE else None
        given: set[str] = set()
        got: dict[str, Window] = {}
        samples: dict[str, list[Any]] = {}
        fulls: dict[str, list[Any]] = {}
        try:
            for arm in order:
                spec = plan.arms[arm]
                side = self.sides[spec.side]
                if side.role not in given and repeat is None:
                    side.put(dict(zip(slots, sets, strict=True)))
                given.add(side.role)
                got[arm], ran = self._window(side, seq, spec.model, plan.ping, spec.extra)
                if not spec.extra:
                    # Read at once, before any other window: nothing the candidate does
                    # after its window can reach what was timed.
                    samples[arm], fulls[arm] = self._read_round(side, ran, plan.described,
                                                                places, full, index)
                if arm == "candidate" and self.config.device == "cpu":
                    # Its inputs are its own to read, not to write: every call's, at places
                    # drawn now (in full for the call compared in full).
                    for k, slot in enumerate(seq):
                        mutated = guards.mutated_inputs(sets[slot], cand.inputs(slot)) \
                            if k == full else guards.mutated_places(
                                sets[slot], cand.inputs(slot), self.rng, SAMPLE_RUNS,
                                SAMPLE_RUN)
                        if mutated:
                            raise Rejected(f"call {k + 1} of timing round {index + 1}: "
                                           f"modifies its inputs in place "
                                           f"({', '.join(mutated)})")
            if "reference" not in samples:  # unpaired: the reference runs them, untimed
                ref.put(dict(zip(slots, sets, strict=True)))
                samples["reference"], fulls["reference"] = self._read_round(
                    ref, ref.run(seq), plan.described, places, full, index)
            self._verdict_calls(samples["reference"], samples["candidate"],
                                f"timing round {index + 1}")
            if full is not None:
                self._verdict(fulls["reference"], fulls["candidate"],
                              f"call {full + 1} of timing round {index + 1}, in full")
        except (Incorrect, Rejected) as exc:
            raise Rejected(f"its results while it was timed are wrong ({exc})") from None
        return got, sets

    def _read_round(self, side: Side, ran: Ran, described: list[Output],
                    places: list[np.ndarray | None], full: int | None, index: int
                    ) -> tuple[list[Any], list[Any]]:
        """A window's outputs as the judge reads them: every call's at the round's places,
        and call ``full``'s whole (if any)."""
        for i, outs in enumerate(ran.outputs):
            try:
                self._matching(described, outs, f"call {i + 1} of timing round {index + 1}")
            except Incorrect:
                if side.role == "reference":
                    raise Unsupported("the reference's outputs change shape or dtype from "
                                      "call to call: they cannot be compared") from None
                raise
        return (side.read_places(ran.outputs, places),
                [] if full is None else side.read(ran.outputs[full]))

    def _verdict_calls(self, expected: list[Any], got: list[Any], when: str) -> None:
        """Every call's sampled outputs (a row per call) at once; the first wrong call named."""
        comparison = compare_outputs(expected, got, self.own.tolerances)
        if not (comparison.incorrect or comparison.slipped):
            return
        for i in range(len(expected[0])):
            self._verdict([t[i] for t in expected], [t[i] for t in got],
                          f"call {i + 1} of {when}")
        self._verdict(expected, got, when)

    def _repeats(self, plan: Plan) -> None:
        """Windows on sets seen before against windows on never-seen ones.  The speedup
        comes from never-seen sets only, so remembering answers cannot raise it; a candidate
        that is much faster on sets it has seen (beyond what warm caches give the
        reference) is reported all the same."""
        gains: dict[str, list[float]] = {"reference": [], "candidate": []}
        for k in range(REPEAT_ROUNDS):
            order = rotation(["reference", "candidate"], k)
            fresh, sets = self._round(plan, 10_000 + 2 * k, order)
            again, _ = self._round(plan, 10_001 + 2 * k, order, repeat=sets)
            for arm in gains:
                gains[arm].append(again[arm].cpu_ns / max(fresh[arm].cpu_ns, 1))
        ref, cand = statistics.median(gains["reference"]), statistics.median(gains["candidate"])
        if cand < REUSE_FACTOR * ref:
            self.flag("reuses_results", f"its calls on input sets it had seen took {cand:.0%} "
                      f"of their time on new ones (the reference's: {ref:.0%}); the speedup "
                      "is from never-seen sets only")

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

    def _hidden_work(self, windows: dict[str, list[Window]],
                     cpu_start: dict[str, tuple[int, int]]) -> None:
        """CPU time the candidate's processes used between its windows, beyond what the
        reference's used between its own (messages, refreshes): work moved out of the clock."""
        if "reference" not in windows:
            return
        outside = {}
        for role, side in self.sides.items():
            total, inside = cpu_start[role]
            outside[role] = (side.runner.cpu_ns() - total - (side.inside_ns - inside)) / 1e6
        inside_ms = sum(w.cpu_ns for w in windows["candidate"]) / 1e6
        hidden = outside["candidate"] - outside["reference"]
        if hidden > max(HIDDEN_MIN_MS, HIDDEN_SHARE * inside_ms):
            raise Rejected(f"works outside its timed windows: {outside['candidate']:.0f} ms of "
                           f"CPU between its calls (the reference: {outside['reference']:.0f} "
                           f"ms; inside its windows: {inside_ms:.0f} ms)")

    def _timing_result(self, rounds: Rounds, rule: StopRule, windows: dict[str, list[Window]],
                       arms: dict[str, Arm], stop: str, before: Any, after: Any, threads: int,
                       calls: int, paired: bool) -> dict[str, Any]:
        def stats(arm: str) -> TimingStats:
            return TimingStats(timer=self.timer.name, stop_reason=stop,
                               **summarize(rounds.arm(arm)))

        busy = {arm: (sum(w.cpu_ns for w in ws) / 1e9, sum(w.wall_ns for w in ws) / 1e9)
                for arm, ws in windows.items()}
        out: dict[str, Any] = {"timing": stats("candidate").model_dump(),
                               "runtime_ms": stats("candidate").median_ms}
        if paired:
            # The rounds' interval, widened by what differs between two processes running
            # the same code: a null candidate is then never "significantly faster".
            margin = 1 + self.own.process_margin
            speedups = {}
            for arm, spec in arms.items():
                if spec.side != "reference":
                    continue
                ratio = rounds.ratio(arm, "candidate", rule)
                low, high = ratio.low / margin, ratio.high * margin
                speedups[spec.baseline] = {
                    "baseline_ms": stats(arm).median_ms, "speedup": ratio.estimate,
                    "speedup_ci": [low, high], "significant": low > 1.0,
                    "speedup_from": "paired"}
                if arm == "reference":
                    main = ratio
                    out.update(baseline=stats(arm).model_dump(),
                               baseline_ms=stats(arm).median_ms, speedup=ratio.estimate,
                               speedup_ci=[low, high], significant=low > 1.0)
            if len(speedups) > 1:
                out["speedups"] = speedups
            why = (f"the speedup's interval is +-{main.rel_halfwidth:.1%}, not "
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
