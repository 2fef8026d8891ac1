"""Resuming after a kill: metric rows past the checkpoint go, and so does a row the kill
cut short (it used to stop every later resume with a JSON error)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from mtd_trainer.training import Run


def test_rows_after_the_checkpoint_and_a_cut_row_are_dropped(tmp_path: Path) -> None:
    rows = [json.dumps({"step": s, "loss": 1.0 / s}) for s in (5, 10, 15)]
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("\n".join(rows) + '\n{"step": 20, "lo', encoding="utf-8")
    Run._truncate_metrics(SimpleNamespace(output=tmp_path), 10)
    kept = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert kept == [5, 10]
