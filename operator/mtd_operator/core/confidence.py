"""How sure a qualification verdict is: a paired bootstrap over the eval examples.

A point ratio on 50 examples flips on noise (an accuracy near 0.5 has a standard error of
about 0.07), so a verdict is only "Qualified" when the whole confidence interval of
score / baseline clears the threshold. Evaluation keeps what each example contributed
(`per_example` in its results): the multi-task model and the baseline are scored on the
same examples in the same order, so each resample draws the same examples for both, and
the metric is recomputed on the resample exactly as the trainer computes it on the whole
set (means for accuracy, exact match and ROUGE-L; confusion counts for macro-F1;
summed n-gram statistics for corpus chrF).

Pure Python and deterministic: the resamples come from a fixed seed, so the same results
give the same interval on every reconcile pass and in both drivers.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from typing import Any, Literal

Verdict = Literal["Qualified", "NotQualified", "Inconclusive"]

RESAMPLES = 1000
SEED = 20241105  # any fixed value: intervals must not change between passes
CHRF_BETA = 2  # sacrebleu's default chrF: beta 2, 6 character orders, no word orders


@dataclass(frozen=True)
class PerExample:
    """What each eval example contributed to a task's score (see the trainer's
    `evaluation.per_example`). `kind` says how to recompute the metric on a subset."""

    metric: str
    kind: Literal["mean", "labels", "chrf"]
    values: tuple[Any, ...]  # floats (mean), (prediction, reference) pairs, or stat rows

    @property
    def count(self) -> int:
        return len(self.values)

    @classmethod
    def from_result(cls, row: Mapping[str, Any]) -> PerExample | None:
        """Read a task row of an evaluation result; None when it has no usable items."""
        raw = row.get("per_example")
        if not isinstance(raw, Mapping):
            return None
        kind, metric = raw.get("kind"), raw.get("metric")
        if not isinstance(metric, str):
            return None
        try:
            if kind == "mean":
                values: tuple[Any, ...] = tuple(float(v) for v in raw["values"])
            elif kind == "labels":
                pairs = zip(raw["predictions"], raw["references"], strict=True)
                values = tuple((int(p), int(r)) for p, r in pairs)
            elif kind == "chrf":
                values = tuple(tuple(int(x) for x in stats) for stats in raw["stats"])
            else:
                return None
        except (KeyError, TypeError, ValueError):
            return None
        return cls(metric=metric, kind=kind, values=values) if values else None

    def score(self, indices: Sequence[int] | None = None) -> float:
        """The task's metric on the examples at `indices` (all of them by default).

        C-level picking and counting (itemgetter, Counter): a bootstrap calls this a
        thousand times per task on every cold reconcile, inside the operator's event loop.
        """
        if indices is None:
            chosen: Sequence[Any] = self.values
        elif len(indices) == 1:
            chosen = [self.values[indices[0]]]
        else:
            chosen = itemgetter(*indices)(self.values)
        if self.kind == "mean":
            return sum(chosen) / len(chosen)
        if self.kind == "labels":
            cells = Counter(chosen)
            return _macro_f1(cells) if self.metric == "macroF1" else _accuracy(cells)
        return _chrf([sum(column) for column in zip(*chosen, strict=True)])


def _accuracy(cells: Counter[tuple[int, int]]) -> float:
    """From counts of (prediction, reference) pairs."""
    return sum(n for (p, r), n in cells.items() if p == r) / cells.total()


def _macro_f1(cells: Counter[tuple[int, int]]) -> float:
    """Unweighted mean F1 over the labels seen in predictions or references (as the
    trainer's metrics.macro_f1 computes it), from counts of (prediction, reference)."""
    tp: dict[int, int] = {}
    wrong: dict[int, int] = {}  # fp + fn per label
    for (p, r), n in cells.items():
        if p == r:
            tp[p] = tp.get(p, 0) + n
        else:
            wrong[p] = wrong.get(p, 0) + n
            wrong[r] = wrong.get(r, 0) + n
    labels = tp.keys() | wrong.keys()
    total = sum(2 * tp[label] / (2 * tp[label] + wrong.get(label, 0)) for label in tp)
    return total / len(labels)


def _chrf(stats: Sequence[int]) -> float:
    """Corpus chrF in [0, 1] from summed [hyp, ref, match] counts per n-gram order, the
    formula of sacrebleu's CHRF (effective-order averaging, no epsilon smoothing)."""
    factor = CHRF_BETA**2
    precision = recall = 0.0
    orders = 0
    for i in range(0, len(stats), 3):
        hyp, ref, match = stats[i : i + 3]
        if hyp > 0 and ref > 0:
            precision += match / hyp
            recall += match / ref
            orders += 1
    if orders == 0:
        return 0.0
    precision, recall = precision / orders, recall / orders
    if precision + recall == 0:
        return 0.0
    return (1 + factor) * precision * recall / (factor * precision + recall)


@lru_cache(maxsize=1024)
def _interval(
    task: PerExample, baseline: PerExample | None, baseline_score: float | None, confidence: float
) -> tuple[float, float] | None:
    n = task.count
    if baseline is not None and baseline.count != n:
        return None  # not the same examples: no pairing possible
    rng = random.Random(SEED)
    ratios = []
    for _ in range(RESAMPLES):
        indices = rng.choices(range(n), k=n)
        reference = baseline.score(indices) if baseline is not None else baseline_score
        if not reference:
            continue  # a resample where the baseline scores 0 has no ratio
        ratios.append(task.score(indices) / reference)
    if len(ratios) < RESAMPLES // 2:
        return None
    ratios.sort()
    tail = (1 - confidence) / 2
    low = ratios[max(0, math.floor(tail * len(ratios)))]
    high = ratios[min(len(ratios) - 1, math.ceil((1 - tail) * len(ratios)) - 1)]
    return round(low, 6), round(high, 6)


def ratio_interval(
    task: PerExample,
    *,
    baseline: PerExample | None = None,
    baseline_score: float | None = None,
    confidence: float,
) -> tuple[float, float] | None:
    """The `confidence` interval of score / baseline, or None when it cannot be had.

    With a measured baseline the resamples are paired (the same examples for both models);
    with a known baseline score only the task's own score varies.
    """
    if baseline is None and not baseline_score:
        return None
    if task.count == 0 or not 0 < confidence < 1:
        return None
    return _interval(task, baseline, None if baseline is not None else baseline_score, confidence)


def verdict(
    ratio: float | None,
    interval: tuple[float, float] | None,
    *,
    threshold: float,
    confidence: float,
    examples: int | None,
    min_examples: int,
) -> Verdict | None:
    """Qualified only when the interval's low end clears the threshold; NotQualified when
    its high end stays below; Inconclusive otherwise, and always with too few examples
    (a bootstrap of 8 perfect answers has zero width but proves nothing).

    `confidence` 0 is the point rule: the ratio alone decides. None: nothing to judge yet.
    """
    if ratio is None:
        return None
    if confidence == 0:
        return "Qualified" if ratio >= threshold else "NotQualified"
    if examples is None or examples < min_examples or interval is None:
        return "Inconclusive"
    low, high = interval
    if low >= threshold:
        return "Qualified"
    if high < threshold:
        return "NotQualified"
    return "Inconclusive"
