"""Task types and metric names: the API, the step configs and the scorers use these."""

from __future__ import annotations

from typing import Literal

TaskType = Literal["classification", "generation"]
Metric = Literal["accuracy", "macroF1", "rougeL", "exactMatch", "chrF"]
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "macroF1", "exactMatch")
GENERATION_METRICS: tuple[str, ...] = ("rougeL", "exactMatch", "chrF")
METRICS: dict[str, tuple[str, ...]] = {
    "classification": CLASSIFICATION_METRICS,
    "generation": GENERATION_METRICS,
}
DEFAULT_METRIC: dict[str, str] = {"classification": "accuracy", "generation": "rougeL"}


def default_metric(type_: str, metric: str | None) -> str:
    """The metric a task is scored with: its own, or accuracy / rougeL by type."""
    return metric if metric is not None else DEFAULT_METRIC[type_]
