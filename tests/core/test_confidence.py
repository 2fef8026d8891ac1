"""Qualification with confidence: the paired bootstrap, the verdict rule, and what
reconcile writes (verdicts, intervals, counts, the EvalSufficient warning, serving)."""

from __future__ import annotations

import random

import pytest

from mtd_operator.core.confidence import PerExample, ratio_interval, verdict
from mtd_trainer import metrics

from .test_reconcile import decide, make_spec, succeed_all


def mean_items(values: list[float], metric: str = "accuracy") -> dict:
    return {"metric": metric, "kind": "mean", "values": values}


def row(values: list[float]) -> dict:
    return {"score": sum(values) / len(values), "examples": len(values),
            "per_example": mean_items(values)}  # fmt: skip


def test_per_example_rebuilds_every_metric_as_the_trainer_computes_it():
    rng = random.Random(1)
    labels = ["neg", "neu", "pos"]
    refs = [rng.choice(labels) for _ in range(60)]
    preds = [r if rng.random() < 0.6 else rng.choice(labels) for r in refs]
    for metric, expected in (
        ("accuracy", metrics.accuracy(preds, refs)),
        ("macroF1", metrics.macro_f1(preds, refs)),
        ("exactMatch", metrics.exact_match(preds, refs)),
    ):
        items = PerExample.from_result(
            {"per_example": metrics.per_example(metric, preds, refs, labels)}
        )
        assert items is not None and items.score() == pytest.approx(expected)
    words = ["the cat sat", "on the mat", "a dog ran home", "rain again today", "新闻 标题"]
    refs = [rng.choice(words) for _ in range(30)]
    preds = [rng.choice(words) if rng.random() < 0.5 else r for r in refs]
    for metric, expected in (
        ("rougeL", metrics.rouge_l(preds, refs)),
        ("chrF", metrics.chrf(preds, refs)),
        ("exactMatch", metrics.exact_match(preds, refs)),
    ):
        items = PerExample.from_result({"per_example": metrics.per_example(metric, preds, refs)})
        assert items is not None and items.score() == pytest.approx(expected, abs=1e-6)


def test_the_interval_is_deterministic_and_contains_the_point_ratio():
    rng = random.Random(0)
    task = PerExample.from_result(row([float(rng.random() < 0.7) for _ in range(200)]))
    base = PerExample.from_result(row([float(rng.random() < 0.7) for _ in range(200)]))
    assert task is not None and base is not None
    first = ratio_interval(task, baseline=base, confidence=0.9)
    assert first == ratio_interval(task, baseline=base, confidence=0.9)
    assert first is not None
    low, high = first
    assert low < task.score() / base.score() < high
    wider = ratio_interval(task, baseline=base, confidence=0.99)
    assert wider is not None and wider[0] <= low and wider[1] >= high


def test_pairing_makes_identical_answers_exactly_equal():
    """Same answers on the same examples: every paired resample has ratio 1, however noisy
    each score is alone. Unpaired, the interval would be wide."""
    values = [float(i % 2) for i in range(150)]
    items = PerExample.from_result(row(values))
    assert items is not None
    assert ratio_interval(items, baseline=items, confidence=0.9) == (1.0, 1.0)
    unpaired = ratio_interval(items, baseline_score=0.5, confidence=0.9)
    assert unpaired is not None and unpaired[1] - unpaired[0] > 0.2


def test_examples_that_differ_in_count_cannot_be_paired():
    a = PerExample.from_result(row([1.0] * 100))
    b = PerExample.from_result(row([1.0] * 99))
    assert a is not None and b is not None
    assert ratio_interval(a, baseline=b, confidence=0.9) is None


@pytest.mark.parametrize(
    ("interval", "examples", "expected"),
    [
        ((0.995, 1.2), 300, "Qualified"),
        ((0.9, 0.985), 300, "NotQualified"),
        ((0.95, 1.05), 300, "Inconclusive"),
        ((1.0, 1.0), 8, "Inconclusive"),  # 8 perfect answers prove nothing
        (None, 300, "Inconclusive"),
    ],
)
def test_verdict_rule(interval, examples, expected):
    assert (
        verdict(1.0, interval, threshold=0.99, confidence=0.9, examples=examples, min_examples=100)
        == expected
    )


def test_confidence_zero_is_the_point_rule():
    for ratio, expected in ((0.99, "Qualified"), (0.989, "NotQualified")):
        assert (
            verdict(ratio, None, threshold=0.99, confidence=0, examples=8, min_examples=100)
            == expected
        )
    assert verdict(None, None, threshold=0.99, confidence=0.9, examples=8, min_examples=100) is None


def test_malformed_per_example_data_is_ignored():
    for bad in (None, "x", {"kind": "mean"}, {"kind": "mean", "metric": "accuracy"},
                {"kind": "labels", "metric": "accuracy", "predictions": [1], "references": []},
                {"kind": "mean", "metric": "accuracy", "values": ["a"]},
                {"kind": "other", "metric": "accuracy", "values": [1]}):  # fmt: skip
        assert PerExample.from_result({"per_example": bad}) is None


# -- through reconcile ----------------------------------------------------------------------


def scored(spec, task_values: dict[str, list[float]], baseline_values: dict[str, list[float]]):
    """Run the pipeline to the end with per-example results (as the trainer writes them)."""
    observed, _, _ = succeed_all(
        spec, {t: 0.0 for t in task_values}, {t: 0.0 for t in baseline_values}
    )
    for key, state in list(observed.items()):
        tasks = (state.result or {}).get("tasks")
        if not tasks:
            continue
        values = baseline_values if key.startswith("baseline-eval") else task_values
        result = {"tasks": {name: row(values[name]) for name in tasks}}
        observed[key] = type(state)("Succeeded", result=result)
    return decide(spec, observed)


def test_a_tiny_eval_set_is_inconclusive_by_default_and_point_judged_with_confidence_zero():
    perfect = {"big": [1.0] * 8, "small": [1.0] * 8, "gen": [0.9] * 8}
    baseline = {"small": [1.0] * 8}
    decision = scored(make_spec(), perfect, baseline)
    rows = {r.name: r for r in decision.status.tasks}
    assert {r.verdict for r in rows.values()} == {"Inconclusive"}
    assert not any(r.qualified for r in rows.values())
    assert rows["small"].ratio_interval == [1.0, 1.0] and rows["small"].eval_examples == 8
    assert decision.status.inconclusive_count == 3 and decision.status.qualified == "0/3"
    conditions = {c.type: c for c in decision.status.conditions}
    assert conditions["Qualified"].status == "False"
    assert conditions["Qualified"].reason == "Inconclusive"
    assert conditions["EvalSufficient"].status == "False"
    assert "big (8)" in conditions["EvalSufficient"].message
    # Inconclusive stays on the multi-task adapter by default.
    assert rows["small"].served_by == "multiTask"

    point = scored(make_spec(qualification={"confidence": 0}), perfect, baseline)
    rows = {r.name: r for r in point.status.tasks}
    assert [rows[n].verdict for n in ("big", "small", "gen")] == [
        "Qualified",
        "Qualified",
        "Qualified",
    ]
    assert rows["big"].ratio_interval is None
    assert point.status.qualified == "3/3"
    conditions = {c.type: c for c in point.status.conditions}
    assert conditions["Qualified"].status == "True"
    assert conditions["EvalSufficient"].reason == "PointRule"


def test_enough_examples_give_conclusive_verdicts_and_counts():
    rng = random.Random(3)
    base = [float(rng.random() < 0.8) for _ in range(300)]
    # big: known baseline 0.8, task at ~0.95 → Qualified; gen: known baseline 0.5, task at
    # ~0.3 → NotQualified; small: the same answers as its measured baseline but three →
    # the paired interval hugs 1 from below → Inconclusive at 0.99.
    small = list(base)
    flipped = 0
    for i, value in enumerate(small):
        if value == 1.0 and flipped < 3:
            small[i], flipped = 0.0, flipped + 1
    values = {
        "big": [float(rng.random() < 0.95) for _ in range(300)],
        "small": small,
        "gen": [rng.random() * 0.6 for _ in range(300)],
    }
    decision = scored(make_spec(), values, {"small": base})
    rows = {r.name: r for r in decision.status.tasks}
    assert rows["big"].verdict == "Qualified" and rows["big"].qualified
    assert rows["gen"].verdict == "NotQualified"
    assert rows["small"].verdict == "Inconclusive"
    low, high = rows["small"].ratio_interval
    assert low < 0.99 <= high <= 1.0
    status = decision.status
    assert (status.qualified_count, status.not_qualified_count, status.inconclusive_count) == (
        1,
        1,
        1,
    )
    conditions = {c.type: c for c in status.conditions}
    assert conditions["EvalSufficient"].status == "True"
    assert conditions["Qualified"].reason == "SomeUnqualified"
    assert "not qualified: gen" in conditions["Qualified"].message
    assert "inconclusive: small" in conditions["Qualified"].message


def test_the_user_chooses_whether_inconclusive_tasks_get_their_baseline():
    values = {"big": [1.0] * 8, "small": [1.0] * 8, "gen": [0.9] * 8}
    spec = make_spec(qualification={"serveBaselineForInconclusive": True})
    decision = scored(spec, values, {"small": [1.0] * 8})
    rows = {r.name: r for r in decision.status.tasks}
    assert rows["small"].verdict == "Inconclusive"
    assert rows["small"].served_by == "baseline" and rows["small"].adapter == "single-small"
