"""Statistics shared by the benchmarks.

Paired bootstrap intervals are not here: the benchmarks use the product's own
(`mtd_operator.core.confidence`), so a benchmark's interval means what a status row's does."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 ≤ q ≤ 1) with linear interpolation between order statistics
    (numpy's default), so p50 of an even count is the mean of the middle two."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within [0, 1], got {q}")
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
