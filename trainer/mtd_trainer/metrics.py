"""Task metrics, each in [0, 1], and the saturation step of an eval history.

Classification metrics are a few lines and need no scikit-learn; text metrics use the
libraries made for them (rouge-score, sacrebleu), with a tokeniser that splits CJK text
per character, since rouge-score's default drops every non-ASCII character and would
score Chinese as empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rouge_score import rouge_scorer
from sacrebleu.metrics import CHRF

_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"  # kana, han, hangul
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


class _CjkAwareTokenizer:
    """Words for alphabetic scripts, single characters for CJK (rouge-score's interface)."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.casefold())


_ROUGE = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_CjkAwareTokenizer())


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
    return sum(_ROUGE.score(r, p)["rougeL"].fmeasure for p, r in pairs) / len(pairs)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (sacrebleu), scaled from 0..100 to 0..1."""
    if not predictions:
        return 0.0
    return CHRF().corpus_score(list(predictions), [list(references)]).score / 100


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
