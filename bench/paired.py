"""Intervals over test examples and training seeds, for comparing trained methods.

The product's qualification interval (`mtd_operator.core.confidence`) compares one model
with one baseline on the same examples. A benchmark compares methods, and a method is a
recipe, not one model: each is trained with several seeds. So every bootstrap resample here
draws twice:

* the test examples, with replacement, the same draw for every method and seed (all were
  scored on the same examples in the same order: the pairing that removes the examples'
  own difficulty from the comparison);
* for each method separately, which of its seeds take part, with replacement (seeds of two
  methods are unrelated runs, so they are not paired).

A method's score on a resample is the mean over its drawn seeds of the metric recomputed
on the drawn examples (with the product's `PerExample.score`, so macro-F1 and chrF are
recomputed, not averaged). Intervals are percentile intervals of the statistic over the
resamples, deterministic for a fixed seed. With one seed per method the draw over seeds is
a no-op and this is the product's paired bootstrap.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mtd_operator.core.confidence import PerExample

RESAMPLES = 1000
SEED = 20261204

# method → seeds' results for one task (a single-seed reference is a list of one)
Runs = Mapping[str, Sequence[PerExample]]
# scores[task][method] → a figure (None where it is undefined on a resample)
Statistic = Callable[[Mapping[str, Mapping[str, float]]], float | None]


@dataclass(frozen=True)
class Estimate:
    """A point value (on all examples and all seeds) and its interval."""

    value: float | None
    low: float | None
    high: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"value": _round(self.value), "low": _round(self.low), "high": _round(self.high)}

    def excludes(self, x: float) -> bool:
        return self.low is not None and self.high is not None and not self.low <= x <= self.high


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _check(tasks: Mapping[str, Runs]) -> int:
    """The common number of examples; every run of a task must have it."""
    counts = {run.count for runs in tasks.values() for seeds in runs.values() for run in seeds}
    if len(counts) != 1:
        raise ValueError(f"runs were scored on different numbers of examples: {sorted(counts)}")
    return counts.pop()


def bootstrap(
    tasks: Mapping[str, Runs],
    statistic: Statistic,
    *,
    confidence: float = 0.9,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> Estimate:
    """The interval of `statistic(scores)` where scores[task][method] is a method's
    seed-mean score on a task. Tasks may differ in examples; each is resampled on its own
    (with the same draw for all of that task's methods and seeds)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    sizes = {task: _check({task: runs}) for task, runs in tasks.items()}
    point = statistic(
        {
            task: {m: _mean([r.score() for r in seeds]) for m, seeds in runs.items()}
            for task, runs in tasks.items()
        }
    )
    rng = random.Random(seed)
    values: list[float] = []
    for _ in range(resamples):
        scores: dict[str, dict[str, float]] = {}
        drawn_seeds = {
            m: rng.choices(range(len(seeds)), k=len(seeds))
            for m, seeds in next(iter(tasks.values())).items()
        }
        for task, runs in tasks.items():
            indices = rng.choices(range(sizes[task]), k=sizes[task])
            scores[task] = {
                m: _mean([seeds[i].score(indices) for i in drawn_seeds[m]])
                for m, seeds in runs.items()
            }
        value = statistic(scores)
        if value is not None:
            values.append(value)
    if len(values) < resamples // 2:  # the statistic is undefined on most resamples
        return Estimate(point, None, None)
    values.sort()
    tail = (1 - confidence) / 2
    low = values[max(0, math.floor(tail * len(values)))]
    high = values[min(len(values) - 1, math.ceil((1 - tail) * len(values)) - 1)]
    return Estimate(point, low, high)


def ratio(method: str, reference: str) -> Statistic:
    """score(method) / score(reference) on the one task of the mapping."""

    def statistic(scores: Mapping[str, Mapping[str, float]]) -> float | None:
        (row,) = scores.values()
        return row[method] / row[reference] if row[reference] > 0 else None

    return statistic


def difference(method: str, reference: str) -> Statistic:
    """score(method) − score(reference) on the one task of the mapping."""

    def statistic(scores: Mapping[str, Mapping[str, float]]) -> float:
        (row,) = scores.values()
        return row[method] - row[reference]

    return statistic


def mean_ratio(method: str, reference: str) -> Statistic:
    """The mean over tasks of score(method) / score(reference)."""

    def statistic(scores: Mapping[str, Mapping[str, float]]) -> float | None:
        ratios = [row[method] / row[reference] for row in scores.values() if row[reference] > 0]
        return _mean(ratios) if len(ratios) == len(scores) else None

    return statistic


def mean_ratio_difference(method: str, other: str, reference: str) -> Statistic:
    """mean ratio(method) − mean ratio(other), both to the same reference."""
    first, second = mean_ratio(method, reference), mean_ratio(other, reference)

    def statistic(scores: Mapping[str, Mapping[str, float]]) -> float | None:
        a, b = first(scores), second(scores)
        return None if a is None or b is None else a - b

    return statistic
