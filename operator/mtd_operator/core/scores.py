"""Scores: what the succeeded evaluations measured, and each task's judgement against
its baseline (the point ratio, its paired-bootstrap interval, the verdict)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api.spec import MultiTaskDeploymentSpec
from .confidence import PerExample, ratio_interval, verdict
from .observation import StepState, succeeded
from .steps import Step


def _task_rows(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """An evaluation result's scored task rows (score, examples, per_example)."""
    if not result:
        return {}
    return {
        name: row
        for name, row in result.get("tasks", {}).items()
        if isinstance(row, dict) and row.get("score") is not None
    }


@dataclass
class Scores:
    """Scored rows by task (or composition) name, and the trained steps they rank."""

    group: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline: dict[str, dict[str, Any]] = field(default_factory=dict)
    composition: dict[str, dict[str, Any]] = field(default_factory=dict)
    baseline_adapters: dict[str, Step] = field(default_factory=dict)  # task → its step
    composed: dict[str, Step] = field(default_factory=dict)  # composition → its step


def collect_scores(steps: list[Step], states: Mapping[str, StepState]) -> Scores:
    """Read the succeeded steps: the group's adapter on each task, baselines measured,
    compositions scored, and which baseline and composition adapters exist."""
    scores = Scores()
    for step in steps:
        if not succeeded(states, step.key):
            continue
        result = states[step.key].result
        if step.role == "evaluation":
            scores.group.update(_task_rows(result))
        elif step.role == "baselineEvaluation":
            scores.baseline.update(_task_rows(result))
        elif step.role == "compositionEvaluation":
            scores.composition.update(_task_rows(result))
        elif step.role == "baseline":
            assert step.task is not None
            scores.baseline_adapters[step.task] = step
        elif step.role == "composition":
            assert step.composition is not None
            scores.composed[step.composition] = step
    return scores


@dataclass(frozen=True)
class Judgement:
    """One task's (or composition's) qualification: the point ratio, its interval, the
    verdict. `qualified` is true only for the Qualified verdict."""

    score: float | None
    baseline: float | None
    ratio: float | None
    interval: tuple[float, float] | None
    examples: int | None
    verdict: str | None

    @property
    def qualified(self) -> bool:
        return self.verdict == "Qualified"

    def status_fields(self) -> dict[str, Any]:
        """The fields a task or composition status row shows of it."""
        return {
            "score": self.score,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "ratio_interval": list(self.interval) if self.interval else None,
            "eval_examples": self.examples,
            "verdict": self.verdict,
            "qualified": self.qualified,
        }


def judge(
    row: Mapping[str, Any] | None,
    baseline_row: Mapping[str, Any] | None,
    known_baseline: float | None,
    spec: MultiTaskDeploymentSpec,
) -> Judgement:
    """Score against baseline, with the paired-bootstrap interval of the ratio."""
    rules = spec.qualification
    score = float(row["score"]) if row else None
    baseline = known_baseline
    if baseline is None and baseline_row:
        baseline = float(baseline_row["score"])
    ratio = round(score / baseline, 6) if score is not None and baseline else None
    examples = int(row["examples"]) if row and row.get("examples") is not None else None
    interval = None
    items = PerExample.from_result(row) if row else None
    if ratio is not None and items is not None and rules.confidence > 0:
        if known_baseline is not None:
            interval = ratio_interval(
                items, baseline_score=known_baseline, confidence=rules.confidence
            )
        elif baseline_row is not None:
            paired = PerExample.from_result(baseline_row)
            if paired is not None:
                interval = ratio_interval(items, baseline=paired, confidence=rules.confidence)
    decided = verdict(
        ratio,
        interval,
        threshold=rules.threshold,
        confidence=rules.confidence,
        examples=examples,
        min_examples=rules.min_eval_examples,
    )
    return Judgement(score, baseline, ratio, interval, examples, decided)
