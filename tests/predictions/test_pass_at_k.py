"""pass@k's unbiased estimator, against the chance it estimates counted out by hand."""

from __future__ import annotations

import itertools

import pytest

from kbtool.report.predictions import pass_at_k


@pytest.mark.parametrize(("n", "c"), [(1, 0), (1, 1), (4, 1), (5, 2), (6, 3), (7, 0), (7, 7)])
def test_estimator_is_the_share_of_k_subsets_with_a_correct_one(n: int, c: int) -> None:
    outcomes = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(outcomes, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(map(any, subsets)) / len(subsets))


def test_fewer_predictions_than_k_is_pass_at_n() -> None:
    assert pass_at_k(2, 1, 5) == 1.0 and pass_at_k(2, 0, 5) == 0.0 and pass_at_k(0, 0, 1) == 0.0
