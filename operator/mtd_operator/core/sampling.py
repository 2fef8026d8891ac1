"""Task sampling rates for multi-task training (arXiv 2411.03644, method 1).

Instance-balanced: r_m = e_m / Σ e_n (each example equally likely).
Temperature with cap K: r_m = min(e_m, K)^(1/τ) / Σ_n min(e_n, K)^(1/τ).
τ = 1 with no binding cap is instance-balanced; τ → ∞ is uniform over tasks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def instance_rates(examples: Mapping[str, int]) -> dict[str, float]:
    _check(examples)
    total = sum(examples.values())
    return {name: count / total for name, count in examples.items()}


def temperature_rates(
    examples: Mapping[str, int], temperature: float, dataset_cap: int | None
) -> dict[str, float]:
    _check(examples)
    if temperature < 1:
        raise ValueError(f"temperature must be ≥ 1, got {temperature}")
    if dataset_cap is not None and dataset_cap < 1:
        raise ValueError(f"dataset cap must be ≥ 1, got {dataset_cap}")
    exponent = 1.0 / temperature
    # Work in log space so that huge counts and temperatures near 1 stay exact enough.
    logs = {
        name: exponent * math.log(min(count, dataset_cap) if dataset_cap else count)
        for name, count in examples.items()
    }
    peak = max(logs.values())
    weights = {name: math.exp(value - peak) for name, value in logs.items()}
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()}


def _check(examples: Mapping[str, int]) -> None:
    if not examples:
        raise ValueError("no tasks to sample from")
    empty = [name for name, count in examples.items() if count < 1]
    if empty:
        raise ValueError(f"tasks without examples cannot be sampled: {empty}")
