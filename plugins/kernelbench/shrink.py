"""``shrink=auto``: scale a problem's size constants until it fits this machine.

KernelBench's sizes are chosen for data-centre GPUs; on a laptop or a small GPU half of
level 1 does not fit.  The search keeps the reference valid: it measures each candidate set
of sizes on the meta device (no allocation), and a set whose reference does not build or
run there is skipped.  Batch-like constants are halved first (down to 2: BatchNorm needs a
batch), then the other large dimensions together, then one at a time.  Sizes that must stay
equal move together: where halving one alone makes the reference invalid, it is halved with
the other sizes of the same value (HingeLoss's ``input_shape = (32768,)`` broadcasts against
its batch of 32768).  Elements of tuple-valued constants are sizes of their own
(``input_shape[0]``); the caller leaves out the constants computed from others (they follow).

Two kinds of limit: the machine's memory is a hard one (a problem that cannot get under it
is refused); the budgets that keep a batch short (``shrink_max_mb``, ``shrink_max_gflop``)
are goals: a problem that cannot reach them runs at the smallest valid sizes found.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# Constants that name a batch dimension.
BATCH_NAMES = ("batch_size", "batch", "batch_dim", "bs", "n_batch", "num_batches")
# Structural constants: scaling them changes what the problem computes, not how big it is.
# (A constant named ``dim`` may be an axis (1) or a size (16384): only the value tells, so
# small values are never scaled, whatever their name.)
STRUCTURAL = ("kernel", "stride", "pad", "dilation", "group", "axis")
# Only dimensions at least this large are scaled (channels 3, kernels 3, ... stay).
MIN_SCALED = 16
MAX_STEPS = 40


@dataclass
class Measure:
    fits: bool        # within every limit and budget
    cost: float       # how far over them: <= 1 fits
    possible: bool = True  # within the hard limits (the machine's memory)


def is_batch(name: str) -> bool:
    lower = name.lower()
    return lower in BATCH_NAMES or "batch" in lower


def scalable(name: str, value: int | float) -> bool:
    if not isinstance(value, int) or isinstance(value, bool) or value < MIN_SCALED:
        return False
    lower = name.lower()
    return not is_batch(name) and not any(part in lower for part in STRUCTURAL)


def shrink(constants: dict[str, int | float], base: dict[str, int | float],
           measure: Callable[[dict[str, int | float]], Measure | None]
           ) -> dict[str, int | float] | None:
    """Sizes (overrides over ``base``) that fit, or None.  ``measure(sizes)`` tells whether
    a set fits, and how far over it is; None when the reference is not valid at those
    sizes."""
    sizes = dict(base)
    current = measure(sizes)
    if current is None:
        return None
    steps = 0

    def value(name: str) -> int | float:
        return sizes.get(name, constants[name])

    def attempt(change: Mapping[str, int | float]) -> Measure | None:
        nonlocal steps
        steps += 1
        return measure({**sizes, **change})

    dims = [n for n in constants if scalable(n, constants[n])]

    def halved(name: str, floor: int) -> tuple[dict[str, int | float], Measure] | None:
        """``name`` halved, alone or, where that is not valid, with the dimensions of its
        value (sizes that must match: a shape against the batch it broadcasts with)."""
        half = max(floor, int(value(name)) // 2)
        change: dict[str, int | float] = {name: half}
        found = attempt(change)
        equal = {n: half for n in dims if n != name and value(n) == value(name)}
        if found is None and equal and steps < MAX_STEPS:
            change.update(equal)
            found = attempt(change)
        return None if found is None else (change, found)

    # 1. batch dimensions, halved (never below 2: a batch of one breaks BatchNorm).
    for name in [n for n in constants if is_batch(n) and isinstance(constants[n], int)]:
        while not current.fits and steps < MAX_STEPS and int(value(name)) > 2:
            step = halved(name, 2)
            if step is None:
                break
            sizes.update(step[0])
            current = step[1]
    # 2. every large dimension halved together (keeps their ratios: channels and groups).
    while not current.fits and steps < MAX_STEPS and dims:
        change = {n: max(1, int(value(n)) // 2) for n in dims if int(value(n)) >= MIN_SCALED // 2}
        if not change:
            break
        found = attempt(change)
        if found is None or found.cost >= current.cost:
            break
        sizes.update(change)
        current = found
    # 3. one dimension at a time, largest first, while it helps and the reference is valid.
    while not current.fits and steps < MAX_STEPS:
        best: tuple[Mapping[str, int | float], Measure] | None = None
        for name in sorted(dims, key=lambda n: -int(value(n))):
            if int(value(name)) < 2:
                continue
            step = halved(name, 1)
            if step is not None and step[1].cost < current.cost and \
                    (best is None or step[1].cost < best[1].cost):
                best = step
            if steps >= MAX_STEPS:
                break
        if best is None:
            break
        sizes.update(best[0])
        current = best[1]
    return sizes if current.fits or current.possible else None
