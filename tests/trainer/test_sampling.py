"""The multi-task sampler: realised mix matches the rates; seeded, resumable, epoch-complete."""

from __future__ import annotations

import json
import math
from collections import Counter

import pytest

from mtd_trainer.sampling import TaskSampler

SIZES = {"big": 5000, "medium": 300, "small": 40}
RATES = {"big": 0.55, "medium": 0.3, "small": 0.15}


def chi_square(counts: Counter[str], rates: dict[str, float]) -> float:
    total = sum(counts.values())
    return sum((counts[task] - total * rate) ** 2 / (total * rate) for task, rate in rates.items())


def test_realised_mix_matches_rates_chi_square() -> None:
    draws = 20_000
    counts = Counter(task for task, _ in TaskSampler(SIZES, RATES, seed=3).draw_many(draws))
    statistic = chi_square(counts, RATES)
    # Three tasks: 2 degrees of freedom, where the chi-square survival function is exp(-x/2).
    p_value = math.exp(-statistic / 2)
    assert p_value > 0.001, (counts, statistic)


def test_chi_square_detects_wrong_rates() -> None:
    """The test has power: a sampler drawing with other rates fails it clearly."""
    counts = Counter(task for task, _ in TaskSampler(SIZES, RATES, seed=3).draw_many(20_000))
    skewed = {"big": 0.5, "medium": 0.33, "small": 0.17}
    assert math.exp(-chi_square(counts, skewed) / 2) < 1e-6


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    first = TaskSampler(SIZES, RATES, seed=1).draw_many(500)
    assert first == TaskSampler(SIZES, RATES, seed=1).draw_many(500)
    assert first != TaskSampler(SIZES, RATES, seed=2).draw_many(500)


def test_resumed_sampler_continues_the_same_sequence() -> None:
    uninterrupted = TaskSampler(SIZES, RATES, seed=5).draw_many(1000)
    before = TaskSampler(SIZES, RATES, seed=5)
    head = before.draw_many(437)
    state = json.loads(json.dumps(before.state_dict()))  # as it travels in a checkpoint
    after = TaskSampler(SIZES, RATES, seed=5)
    after.load_state_dict(state)
    assert head + after.draw_many(1000 - 437) == uninterrupted


def test_each_epoch_visits_every_example_once() -> None:
    sampler = TaskSampler({"a": 7, "b": 3}, {"a": 0.5, "b": 0.5}, seed=0)
    seen: dict[str, list[int]] = {"a": [], "b": []}
    while len(seen["a"]) < 7 or len(seen["b"]) < 9:
        task, index = sampler.draw()
        seen[task].append(index)
    for epoch in range(3):
        assert sorted(seen["b"][epoch * 3 : epoch * 3 + 3]) == [0, 1, 2]
    assert sorted(seen["a"][:7]) == list(range(7))


def test_state_from_other_data_is_refused() -> None:
    state = TaskSampler(SIZES, RATES, seed=5).state_dict()
    with pytest.raises(ValueError, match="other data"):
        TaskSampler({**SIZES, "small": 41}, RATES, seed=5).load_state_dict(state)
