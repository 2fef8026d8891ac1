"""bench/trainer_throughput.py's figures follow from its runs: the committed JSON's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.trainer_throughput import figures_of

COMMITTED = Path(__file__).resolve().parents[2] / "bench" / "results" / "trainer_throughput.json"


def test_the_committed_figures_are_computed_from_the_committed_runs():
    figures = json.loads(COMMITTED.read_text(encoding="utf-8"))["figures"]
    again = figures_of({name: row["runs"] for name, row in figures.items()})
    assert list(again) == list(figures)
    for name, row in figures.items():
        assert list(again[name]) == list(row), name
        for key, value in row.items():
            if key == "runs":
                assert again[name][key] == value
            else:
                assert again[name][key] == pytest.approx(value), (name, key)


def test_fastest_time_and_highest_memory_are_kept():
    run = {"useful_tokens": 100, "computed_tokens": 125, "rss_after_load_mib": 1.0}
    runs = {
        "hf-padded": [
            {**run, "seconds": 10.0, "peak_rss_mib": 50.0, "training_peak_increase_mib": 40.0},
            {**run, "seconds": 8.0, "peak_rss_mib": 60.0, "training_peak_increase_mib": 45.0},
        ]
    }
    row = figures_of(runs)["hf-padded"]
    assert (row["seconds"], row["peak_rss_mib"]) == (8.0, 60.0)
    assert row["useful_tokens_per_second"] == pytest.approx(12.5)
    assert row["padding_fraction"] == pytest.approx(0.2)
    assert row["peak_vs_hf"] == 1.0
