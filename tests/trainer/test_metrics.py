"""Metric values on hand-made cases, all in [0, 1] (MAE in label steps excepted)."""

from __future__ import annotations

import pytest

from mtd_trainer import metrics


def test_classification_metrics_by_hand() -> None:
    references = ["a", "a", "a", "b", "b", "c"]
    predictions = ["a", "a", "b", "b", "c", "c"]
    # per label F1: a = 2*2/(4+0+1) = 0.8; b = 2/(2+1+1) = 0.5; c = 2/(2+1+0) = 2/3
    assert metrics.accuracy(predictions, references) == pytest.approx(4 / 6)
    assert metrics.macro_f1(predictions, references) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert metrics.exact_match(predictions, references) == pytest.approx(4 / 6)


def test_macro_f1_counts_predicted_labels_absent_from_references() -> None:
    assert metrics.macro_f1(["x", "a"], ["a", "a"]) == pytest.approx((2 / 3 + 0) / 2)


def test_ordinal_mae_in_label_steps() -> None:
    labels = ["negative", "neutral", "positive"]
    scores = metrics.classification_scores(
        ["negative", "positive", "neutral"], ["positive", "positive", "neutral"], labels, True
    )
    assert scores["mae"] == pytest.approx(2 / 3)
    assert "mae" not in metrics.classification_scores(["a"], ["a"], ["a", "b"], False)


def test_exact_match_ignores_case_and_whitespace_only() -> None:
    assert metrics.exact_match(["  Hello   World "], ["hello world"]) == 1.0
    assert metrics.exact_match(["hello world."], ["hello world"]) == 0.0


def test_rouge_l_by_hand() -> None:
    # LCS("the cat sat", "the cat sat down") = 3; P = 1, R = 3/4, F = 6/7
    assert metrics.rouge_l(["the cat sat"], ["the cat sat down"]) == pytest.approx(6 / 7)
    assert metrics.rouge_l(["x"], ["y"]) == 0.0


def test_rouge_l_scores_chinese_per_character() -> None:
    # LCS of 这家店很好 and 这家店不好 is 这家店好 (4 of 5 characters)
    assert metrics.rouge_l(["这家店很好"], ["这家店不好"]) == pytest.approx(0.8)
    assert metrics.rouge_l(["今天天气很好"], ["今天天气很好"]) == 1.0


def test_chrf_is_scaled_to_unit_interval() -> None:
    assert metrics.chrf(["the same text"], ["the same text"]) == pytest.approx(1.0)
    partial = metrics.chrf(["the cat sat on the mat"], ["a cat was on a mat"])
    assert 0.0 < partial < 1.0
    assert metrics.chrf(["你好世界"], ["你好世界"]) == pytest.approx(1.0)


def test_generation_scores_are_in_unit_interval() -> None:
    scores = metrics.generation_scores(["a b c", "完全不同"], ["a b d", "完全相同"])
    assert set(scores) == {"rougeL", "exactMatch", "chrF"}
    assert all(0.0 <= value <= 1.0 for value in scores.values())


def test_saturation_step_is_first_step_reaching_the_best() -> None:
    history = [(10, 0.5), (20, 0.7), (30, 0.8), (40, 0.8), (50, 0.79)]
    assert metrics.saturation_step(history) == 30
    assert metrics.saturation_step(history, tolerance=0.02) == 30  # 0.7 < 0.8 - 0.02
    assert metrics.saturation_step([(10, 0.5), (20, 0.69), (30, 0.7)], tolerance=0.02) == 20
    assert metrics.saturation_step([]) is None
