"""Tests of ``kbtool eval --predictions`` and its report."""

from __future__ import annotations

import itertools
from typing import Any


def expected_pass_at_k(rows: list[dict[str, Any]], tasks: list[str], k: int) -> float:
    """pass@k counted out: per task, the share of the k-subsets of the model's predictions
    (``rows`` of ``kbtool eval --predictions --json``) that hold a correct one (all of them
    where there are fewer than k; 0 without any), averaged over ``tasks``."""
    total = 0.0
    for task in tasks:
        oks = [r["status"] == "ok" for r in rows if r["task"] == task]
        if oks:
            subsets = list(itertools.combinations(oks, min(k, len(oks))))
            total += sum(map(any, subsets)) / len(subsets)
    return total / len(tasks)
