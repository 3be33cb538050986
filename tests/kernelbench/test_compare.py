"""The output comparison: NaN and infinities, overflowing differences, exact dtypes, and the
fast path (every value finite) agreeing with the general one."""

from __future__ import annotations

import math

import pytest

from kbtool_plugins.kernelbench import compare
from kbtool_plugins.kernelbench.compare import compare_outputs
from kbtool_plugins.kernelbench.settings import DEFAULT_TOLERANCES

torch = pytest.importorskip("torch")


def verdict(ref: object, new: object) -> compare.Comparison:
    return compare_outputs(ref, new, DEFAULT_TOLERANCES)


def test_nan_and_infinities_in_the_same_places_agree() -> None:
    ref = torch.randn(1000)
    ref[3], ref[10], ref[20] = math.nan, math.inf, -math.inf
    result = verdict(ref, ref.clone())
    assert result.incorrect is None and result.slipped is None
    assert result.max_abs_diff == [0.0]


@pytest.mark.parametrize("where, value", [(5, math.nan), (5, math.inf), (10, -math.inf)])
def test_a_nan_or_infinity_the_reference_lacks_is_wrong(where: int, value: float) -> None:
    ref = torch.randn(1000)
    new = ref.clone()
    new[where] = value
    assert "1 of 1000 values differ" in (verdict(ref, new).incorrect or "")


def test_opposite_infinities_and_an_overflowing_difference_are_wrong() -> None:
    ref = torch.tensor([math.inf, 3e38, -math.inf, 2.0])
    new = torch.tensor([-math.inf, -3e38, 1.0, 2.0])  # 3e38 - (-3e38) overflows float32
    result = verdict(ref, new)
    assert "3 of 4 values differ" in (result.incorrect or "")
    assert result.max_abs_diff == [None]  # an infinite difference is not a number to report


def test_within_and_beyond_the_tolerance() -> None:
    ref = torch.randn(4096, dtype=torch.float64) * 10
    close = ref * (1 + 1e-8)
    far = ref.clone()
    far[7] += 1e-3
    assert verdict(ref, close).incorrect is None
    assert "1 of 4096 values differ" in (verdict(ref, far).incorrect or "")
    assert verdict(ref, far).max_abs_diff[0] == pytest.approx(1e-3, rel=1e-6)


def test_integers_must_match_exactly() -> None:
    ref = torch.arange(100)
    new = ref.clone()
    new[99] += 1
    assert verdict(ref, ref.clone()).incorrect is None
    assert "exact match needed" in (verdict(ref, new).incorrect or "")


def test_tiny_and_constant_outputs_slip_through_the_tolerance_only() -> None:
    ref = torch.randn(10_000) * 1e-5  # every value below atol
    assert "constant" in (verdict(ref, torch.zeros_like(ref)).slipped or "")
    assert "relative L2 error" in (verdict(ref, ref.flip(0)).slipped or "")


@pytest.mark.parametrize("seed", range(5))
def test_fast_path_accumulates_what_the_general_path_does(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    ref = torch.randn(5000, generator=generator)
    new = ref + 1e-4 * torch.randn(5000, generator=generator)
    tol = DEFAULT_TOLERANCES["float32"]
    fast, general = compare._Stats(), compare._Stats()
    compare._accumulate(fast, ref, new, tol)
    compare._accumulate_nonfinite(general, ref, new, tol)
    assert fast.bad == general.bad > 0 and fast.finite == general.finite == 5000
    assert fast.worst == general.worst
    assert (fast.new_min, fast.new_max, fast.ref_min, fast.ref_max) == \
        (general.new_min, general.new_max, general.ref_min, general.ref_max)
    assert fast.ref_sq == pytest.approx(general.ref_sq, rel=1e-6)
    assert fast.diff_sq == pytest.approx(general.diff_sq, rel=1e-5)


def test_complex_outputs_are_compared_on_both_parts() -> None:
    ref = torch.randn(100, dtype=torch.complex64)
    new = ref.clone()
    new[4] = complex(new[4].real, new[4].imag + 1)  # the same real parts
    assert verdict(ref, ref.clone()).incorrect is None
    assert "1 of 200 values differ" in (verdict(ref, new).incorrect or "")


@pytest.mark.parametrize("ref", [2e-6, -3e-5, 1e-6])
def test_a_tiny_scalar_answered_as_zero_slips(ref: float) -> None:
    """Inside atol, but 100% wrong: every output meets the relative bound, scalars too."""
    result = verdict(torch.tensor(ref), torch.tensor(0.0))
    assert result.incorrect is None and "relative L2 error" in (result.slipped or "")


def test_outputs_that_are_truly_zero_are_not_held_to_their_rounding_noise() -> None:
    assert verdict(torch.tensor(0.0), torch.tensor(1e-8)).slipped is None
    assert verdict(torch.zeros(64), torch.full((64,), 1e-8)).slipped is None
    near = torch.tensor(2e-6)
    assert verdict(near, near * (1 + 1e-4)).slipped is None
