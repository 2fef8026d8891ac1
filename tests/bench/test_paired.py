"""bench/paired.py: intervals over test examples (paired) and seeds (per method)."""

from __future__ import annotations

import random

import pytest

from bench import paired
from mtd_operator.core.confidence import PerExample, ratio_interval


def accuracy(values: list[float]) -> PerExample:
    return PerExample(metric="accuracy", kind="mean", values=tuple(values))


def coin(p: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [1.0 if rng.random() < p else 0.0 for _ in range(n)]


def test_one_seed_is_the_products_paired_bootstrap_shape():
    a, b = accuracy(coin(0.7, 300, 1)), accuracy(coin(0.6, 300, 2))
    got = paired.bootstrap({"t": {"a": [a], "b": [b]}}, paired.ratio("a", "b"))
    product = ratio_interval(a, baseline=b, confidence=0.9)
    assert got.value == pytest.approx(a.score() / b.score())
    assert got.low < got.value < got.high
    # different resample streams, same statistic: the intervals agree to sampling noise
    assert got.low == pytest.approx(product[0], abs=0.05)
    assert got.high == pytest.approx(product[1], abs=0.05)


def test_deterministic():
    runs = {"t": {"a": [accuracy(coin(0.5, 100, 3))], "b": [accuracy(coin(0.5, 100, 4))]}}
    first = paired.bootstrap(runs, paired.difference("a", "b"))
    assert paired.bootstrap(runs, paired.difference("a", "b")) == first


def test_pairing_removes_the_examples_difficulty():
    """Two models that differ on 5% of the examples: unpaired, the test sample's noise
    would swamp that; paired, the difference is significant."""
    base = coin(0.5, 400, 5)
    better = list(base)
    for i in range(0, 400, 20):  # right on 20 examples the other gets wrong
        better[i] = 1.0
    worse = [0.0 if i % 20 == 0 else v for i, v in enumerate(base)]
    estimate = paired.bootstrap(
        {"t": {"a": [accuracy(better)], "b": [accuracy(worse)]}}, paired.difference("a", "b")
    )
    assert estimate.excludes(0.0) and estimate.low > 0


def test_seed_spread_widens_the_interval():
    """Seeds that disagree make a method's interval wider than one seed's."""
    examples = 300
    steady = [accuracy(coin(0.6, examples, 10))] * 3
    spread = [accuracy(coin(p, examples, 20 + i)) for i, p in enumerate((0.45, 0.6, 0.75))]
    ref = [accuracy(coin(0.6, examples, 30))]
    narrow = paired.bootstrap({"t": {"m": steady, "r": ref}}, paired.difference("m", "r"))
    wide = paired.bootstrap({"t": {"m": spread, "r": ref}}, paired.difference("m", "r"))
    assert (wide.high - wide.low) > 1.5 * (narrow.high - narrow.low)


def test_mean_ratio_over_tasks_and_the_difference_of_two_methods():
    ref = {t: [accuracy(coin(0.5, 200, i))] for i, t in enumerate("xyz")}
    good = {t: [accuracy(coin(0.8, 200, 10 + i))] for i, t in enumerate("xyz")}
    same = {t: list(ref[t]) for t in "xyz"}
    runs = {t: {"good": good[t], "same": same[t], "ref": ref[t]} for t in "xyz"}
    mean = paired.bootstrap(runs, paired.mean_ratio("same", "ref"))
    assert mean.value == pytest.approx(1.0) and mean.low == pytest.approx(1.0)
    diff = paired.bootstrap(runs, paired.mean_ratio_difference("good", "same", "ref"))
    assert diff.low > 0.3


def test_a_ratio_with_a_zero_reference_has_no_value_and_no_interval():
    estimate = paired.bootstrap(
        {"t": {"a": [accuracy([1.0] * 100)], "b": [accuracy([0.0] * 100)]}},
        paired.ratio("a", "b"),
    )
    assert estimate.value is None and estimate.low is None
    assert not estimate.excludes(1.0)
    assert estimate.to_json() == {"value": None, "low": None, "high": None}


def test_runs_on_different_examples_are_refused():
    with pytest.raises(ValueError, match="different numbers of examples"):
        paired.bootstrap(
            {"t": {"a": [accuracy([1.0] * 10)], "b": [accuracy([1.0] * 11)]}},
            paired.difference("a", "b"),
        )


def test_confidence_must_be_a_fraction():
    with pytest.raises(ValueError, match="confidence"):
        paired.bootstrap({"t": {"a": [accuracy([1.0])]}}, lambda s: 1.0, confidence=1.0)
