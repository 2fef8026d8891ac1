"""bench/operator_latency.py's summary has the shape its committed results have."""

from __future__ import annotations

import json
from pathlib import Path

from bench.operator_latency import summary, table

COMMITTED = Path(__file__).resolve().parents[2] / "bench" / "results" / "operator_latency.json"


def shape(value):
    return {k: shape(v) for k, v in value.items()} if isinstance(value, dict) else None


def test_summary_matches_the_committed_rows_and_renders():
    rss = {"idle": 40 * 1024, "after_first_jobs": 50 * 1024, "end": 60 * 1024, "peak": None}
    row = summary(2, 0.5, [0.1, 0.3], None, [2.0], 4, rss)
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))["rows"][0]
    assert shape(row) == shape(committed)
    assert row["first_job_seconds"] == {"p50": 0.2, "p95": 0.29, "max": 0.3}
    assert row["ready"] == {"count": 1, "p50_seconds": 2.0, "all_seconds": None}
    assert row["rss_mib"] == {"idle": 40.0, "after_first_jobs": 50.0, "end": 60.0, "peak": 0.0}
    text = table([row])
    assert "| 2 | 200 ms | 290 ms | 300 ms | – | timeout | 4 |" in text
