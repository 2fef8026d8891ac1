"""Sampling rates against values computed by hand."""

from __future__ import annotations

import math

import pytest

from mtd_operator.core.sampling import instance_rates, temperature_rates


def test_instance_rates_are_proportional_to_examples():
    assert instance_rates({"a": 300, "b": 100}) == {"a": 0.75, "b": 0.25}


def test_temperature_one_without_binding_cap_is_instance_balanced():
    rates = temperature_rates({"a": 300, "b": 100}, temperature=1.0, dataset_cap=10_000)
    assert rates == pytest.approx({"a": 0.75, "b": 0.25})


def test_temperature_two_takes_square_roots():
    # sqrt(400) = 20, sqrt(100) = 10 → 2/3 and 1/3
    rates = temperature_rates({"a": 400, "b": 100}, temperature=2.0, dataset_cap=10_000)
    assert rates == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_cap_limits_large_tasks_before_the_exponent():
    # K = 100: min(10000, 100) = 100 and min(25, 100) = 25; τ = 2 → 10 and 5.
    rates = temperature_rates({"a": 10_000, "b": 25}, temperature=2.0, dataset_cap=100)
    assert rates == pytest.approx({"a": 2 / 3, "b": 1 / 3})


def test_cap_above_every_task_changes_nothing():
    capped = temperature_rates({"a": 50, "b": 10}, temperature=1.43, dataset_cap=1_000_000)
    uncapped = temperature_rates({"a": 50, "b": 10}, temperature=1.43, dataset_cap=None)
    assert capped == pytest.approx(uncapped)


def test_exponent_point_three():
    tau = 1 / 0.3
    e = {"a": 5000, "b": 500, "c": 50}
    weights = {k: v**0.3 for k, v in e.items()}
    total = sum(weights.values())
    expected = {k: w / total for k, w in weights.items()}
    assert temperature_rates(e, temperature=tau, dataset_cap=None) == pytest.approx(expected)


def test_large_temperature_tends_to_uniform():
    rates = temperature_rates(
        {"a": 1_000_000, "b": 10, "c": 1}, temperature=1000.0, dataset_cap=None
    )
    assert rates == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, abs=0.01)


def test_rates_sum_to_one_for_huge_counts():
    rates = temperature_rates({f"t{i}": 10**i for i in range(1, 15)}, 1.0, None)
    assert math.isclose(sum(rates.values()), 1.0)


@pytest.mark.parametrize("counts", [{}, {"a": 0}])
def test_no_examples_is_an_error(counts):
    with pytest.raises(ValueError):
        instance_rates(counts)


def test_temperature_below_one_is_rejected():
    with pytest.raises(ValueError, match="temperature"):
        temperature_rates({"a": 1}, 0.5, None)
