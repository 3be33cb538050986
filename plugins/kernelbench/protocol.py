"""The messages between the KernelBench judge and its two runners (reference, candidate).

The judge asks, a runner answers; one reply per request.  Tensors never travel in messages:
inputs lie in shared buffers the judge writes (``attach``: one per input set, a *slot*), and
a ``run`` reply says where each call's outputs lie in the runner's memory, which the judge
then reads itself (``kbtool.sandbox.peek``): no request asks the runner for its outputs, so
no code of the candidate's runs between a timed window and the judge's read.  Sources travel
in a shared buffer too (a message is one datagram: a large source would not fit).  What a
runner says is only believed as far as the judge can check it: shapes against the
reference's, values by comparison, times by the judge's own clock.  ``problems`` are what a
runner's own checks saw (threads left running, replaced functions, changed torch settings):
signs a naive exploit leaves, reported by a process the candidate controls
(docs/integrity.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

DType = Literal["float16", "bfloat16", "float32", "float64", "complex64", "complex128", "int8",
                "int16", "int32", "int64", "uint8", "bool"]
DTYPES: frozenset[str] = frozenset(DType.__args__)  # type: ignore[attr-defined]
Text = Annotated[str, Field(max_length=20_000)]
Problems = Annotated[list[Annotated[str, Field(max_length=2000)]], Field(max_length=20)]
Mode = Literal["eager", "compile"]
# Plain values a problem's get_inputs may return beside tensors.
Value = int | float | bool | str | None | list[int] | list[float]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TensorSpec(_Message):
    """A tensor in a shared buffer: where, what shape and strides (in elements), what dtype."""

    offset: int = Field(ge=0)
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=16)
    stride: list[Annotated[int, Field(ge=0)]] = Field(max_length=16)
    dtype: DType


class Arg(_Message):
    """One positional argument of ``forward``: a tensor in the slot's buffer, or a value."""

    tensor: TensorSpec | None = None
    value: Value = None


# -- judge -> runner ------------------------------------------------------------------------
class Load(_Message):
    """Load the problem (and the candidate): their sources lie, UTF-8, one after the other in
    the buffer that comes with the message."""

    op: Literal["load"] = "load"
    problem_bytes: int = Field(ge=0)   # the problem's source, size overrides applied
    problem_file: str
    solution_bytes: int | None = Field(None, ge=0)  # the candidate's (candidate runner only)
    solution_file: str | None = None
    seed: int                          # for the models' parameters (both runners alike)
    device: str
    timer: str
    threads: int = Field(ge=1)
    cpu: int | None = Field(None, ge=0, description="the one CPU to run on, if any")
    modes: list[Mode] = Field(default_factory=lambda: list[Mode](["eager"]))
    compile_mode: str = "default"


class Attach(_Message):
    """A new input set in ``slot`` (the buffer comes with the message)."""

    op: Literal["attach"] = "attach"
    slot: int = Field(ge=0)
    size: int = Field(ge=1)
    args: list[Arg] = Field(max_length=64)


class Refresh(_Message):
    """The judge wrote new values into these slots' buffers (same tensors, new values)."""

    op: Literal["refresh"] = "refresh"
    slots: list[Annotated[int, Field(ge=0)]] = Field(max_length=4096)


class Prepare(_Message):
    """Before a timed window, outside it: the timer's preparation (L2 flush, sync)."""

    op: Literal["prepare"] = "prepare"


class Run(_Message):
    """Call the model once per slot, in order, keeping every call's outputs (in memory, on
    the device) until the next run; ``checked``: a correctness call (the slower checks
    too)."""

    op: Literal["run"] = "run"
    slots: list[int] = Field(max_length=4096)
    model: Mode = "eager"
    checked: bool = False
    # Leave the random generators as they were (another baseline's window: the calls the
    # outputs are compared on must draw what the candidate's draw, for dropout and the like).
    keep_rng: bool = False


class Ops(_Message):
    """Call the model on ``slot`` under a recorder of the ATen ops it dispatches, and of the
    time they take."""

    op: Literal["ops"] = "ops"
    slot: int = Field(ge=0)


class Reshape(_Message):
    """Rebuild the model with these size constants (the problem's module loaded anew)."""

    op: Literal["reshape"] = "reshape"
    sizes: dict[str, int | float]


class Stop(_Message):
    op: Literal["stop"] = "stop"


Request = Annotated[Load | Attach | Refresh | Prepare | Run | Ops | Reshape | Stop,
                    Field(discriminator="op")]
REQUESTS: TypeAdapter[Request] = TypeAdapter(Request)


# -- runner -> judge ------------------------------------------------------------------------
class Done(_Message):
    op: Literal["done"] = "done"
    problems: Problems = Field(default_factory=list)


class Output(_Message):
    """One output tensor of a call, contiguous, where the judge reads it: its address in the
    runner's memory (on a GPU, of the copy the runner made on the host inside the window)."""

    address: int = Field(ge=0, lt=2**64)
    shape: list[Annotated[int, Field(ge=0)]] = Field(max_length=16)
    dtype: DType


class Ran(_Message):
    op: Literal["ran"] = "ran"
    calls: int = Field(ge=0)
    outputs: list[Annotated[list[Output], Field(max_length=64)]] = Field(max_length=4096)
    problems: Problems = Field(default_factory=list)


class OpsSeen(_Message):
    op: Literal["ops"] = "ops"
    ops: dict[Annotated[str, Field(max_length=200)], int] = Field(max_length=500)
    aten_share: float = Field(ge=0.0, le=1.0)  # of the call's time, in those ops


class Failed(_Message):
    """The model raised (``where``: loading it, or calling it)."""

    op: Literal["failed"] = "failed"
    where: Literal["load", "call"]
    error: Text


Reply = Annotated[Done | Ran | OpsSeen | Failed, Field(discriminator="op")]
REPLIES: TypeAdapter[Reply] = TypeAdapter(Reply)
