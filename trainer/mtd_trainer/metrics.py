"""Task metrics, each in [0, 1], and the saturation step of an eval history.

Classification metrics are a few lines and need no scikit-learn; text metrics use the
libraries made for them (rouge-score, sacrebleu), with a tokeniser that splits CJK text
per character, since rouge-score's default drops every non-ASCII character and would
score Chinese as empty. Both are imported on first use: a classification-only process
(most of a pipeline's) does not pay their import time (about a CPU-second).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer
    from sacrebleu.metrics import CHRF

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"  # kana, han, hangul
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


class _CjkAwareTokenizer:
    """Words for alphabetic scripts, single characters for CJK (rouge-score's interface)."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.casefold())


@functools.cache
def _rouge() -> RougeScorer:
    from rouge_score.rouge_scorer import RougeScorer

    return RougeScorer(["rougeL"], tokenizer=_CjkAwareTokenizer())


def _chrf() -> CHRF:
    from sacrebleu.metrics import CHRF

    return CHRF()


def normalise(text: str) -> str:
    """Exact match ignores case and runs of whitespace, nothing else."""
    return " ".join(text.split()).casefold()


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> float:
    pairs = list(zip(predictions, references, strict=True))
    return sum(normalise(p) == normalise(r) for p, r in pairs) / len(pairs) if pairs else 0.0


def accuracy(predictions: Sequence[str], references: Sequence[str]) -> float:
    pairs = list(zip(predictions, references, strict=True))
    return sum(p == r for p, r in pairs) / len(pairs) if pairs else 0.0


def macro_f1(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over labels seen in references or predictions."""
    pairs = list(zip(predictions, references, strict=True))
    labels = sorted(set(predictions) | set(references))
    if not labels:
        return 0.0
    scores = []
    for label in labels:
        tp = sum(p == label and r == label for p, r in pairs)
        fp = sum(p == label and r != label for p, r in pairs)
        fn = sum(p != label and r == label for p, r in pairs)
        scores.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return sum(scores) / len(scores)


def mean_absolute_error(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str]
) -> float:
    """For ordinal labels: mean distance in label steps (0 is perfect; not in [0, 1])."""
    rank = {label: i for i, label in enumerate(labels)}
    pairs = list(zip(predictions, references, strict=True))
    return sum(abs(rank[p] - rank[r]) for p, r in pairs) / len(pairs) if pairs else 0.0


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    pairs = list(zip(predictions, references, strict=True))
    if not pairs:
        return 0.0
    return sum(_rouge().score(r, p)["rougeL"].fmeasure for p, r in pairs) / len(pairs)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu), scaled from 0..100 to 0..1."""
    if not predictions:
        return 0.0
    return _chrf().corpus_score(list(predictions), [list(references)]).score / 100


def task_row(
    task_metric: str,
    scores: dict[str, float],
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None,
) -> dict[str, Any]:
    """One task's results row: its metric and score, every metric, and `per_example`
    (what lets the operator put a confidence interval on the ratio)."""
    return {
        "metric": task_metric,
        "score": scores[task_metric],
        "examples": len(references),
        **scores,
        "per_example": per_example(task_metric, predictions, references, labels),
    }


def per_example(
    metric: str,
    predictions: Sequence[str],
    references: Sequence[str],
    labels: Sequence[str] | None = None,
) -> dict:
    """What each example contributed to `metric`, so that a paired bootstrap can recompute
    the metric on any resample (the operator's core/confidence.py reads this shape):
    label indices for classification accuracy and macro-F1, per-example values for the
    means (exact match, ROUGE-L), sacrebleu's per-sentence statistics for corpus chrF."""
    if labels is not None and metric in ("accuracy", "macroF1"):
        index = {label: i for i, label in enumerate(labels)}
        return {
            "metric": metric,
            "kind": "labels",
            "predictions": [index.get(p, -1) for p in predictions],
            "references": [index.get(r, -2) for r in references],
        }
    if metric == "chrF":
        stats = _chrf()._extract_corpus_statistics(list(predictions), [list(references)])
        return {"metric": metric, "kind": "chrf", "stats": [list(map(int, s)) for s in stats]}
    if metric == "exactMatch":
        values = [
            float(normalise(p) == normalise(r))
            for p, r in zip(predictions, references, strict=True)
        ]
    elif metric == "rougeL":
        values = [
            _rouge().score(r, p)["rougeL"].fmeasure
            for p, r in zip(predictions, references, strict=True)
        ]
    else:
        raise ValueError(f"no per-example form for metric {metric!r}")
    return {"metric": metric, "kind": "mean", "values": [round(v, 6) for v in values]}


def classification_scores(
    predictions: Sequence[str], references: Sequence[str], labels: Sequence[str], ordinal: bool
) -> dict[str, float]:
    scores = {
        "accuracy": accuracy(predictions, references),
        "macroF1": macro_f1(predictions, references),
        "exactMatch": exact_match(predictions, references),
    }
    if ordinal:
        scores["mae"] = mean_absolute_error(predictions, references, labels)
    return scores


def generation_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    return {
        "rougeL": rouge_l(predictions, references),
        "exactMatch": exact_match(predictions, references),
        "chrF": chrf(predictions, references),
    }


def saturation_step(history: Sequence[tuple[int, float]], tolerance: float = 0.0) -> int | None:
    """The step after which the score stopped improving: the first step reaching the best.

    `tolerance` lets noise-level gains (a later score within `tolerance` of the best)
    count as no improvement.
    """
    if not history:
        return None
    best = max(score for _, score in history)
    return min(step for step, score in history if score >= best - tolerance)
