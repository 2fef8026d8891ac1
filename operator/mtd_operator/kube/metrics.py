"""Prometheus metrics of the operator (served on MTD_METRICS_PORT at /metrics)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram, start_http_server


@dataclass(frozen=True)
class OperatorMetrics:
    reconciles: Counter
    reconcile_seconds: Histogram
    children_created: Counter
    jobs: Gauge


METRICS = OperatorMetrics(
    reconciles=Counter("mtd_reconciles_total", "Reconcile passes by outcome.", ["outcome"]),
    reconcile_seconds=Histogram(
        "mtd_reconcile_duration_seconds",
        "Wall time of one reconcile pass.",
        buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    ),
    children_created=Counter(
        "mtd_children_created_total", "Child objects created, by kind.", ["kind"]
    ),
    jobs=Gauge(
        "mtd_jobs", "Pipeline Jobs by resource and state.", ["namespace", "deployment", "state"]
    ),
)


def serve_metrics(port: int) -> None:
    start_http_server(port)
