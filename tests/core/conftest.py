"""Fixtures for core tests: write specs and their data into a temporary folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .specs import write_jsonl

SpecWriter = Callable[..., Path]


@pytest.fixture
def write_spec(tmp_path: Path) -> SpecWriter:
    """Write a spec plus data for each task (`counts` maps task name → training examples),
    and a stand-in base model folder at a relative `baseModel.uri`."""

    def write(doc: dict[str, Any], counts: dict[str, int] | None = None) -> Path:
        counts = counts or {}
        for entry in doc["spec"]["tasks"]:
            labels = entry.get("labels") or ["some text"]
            n = counts.get(entry["name"], 10)
            rows = [
                {"input": f"{entry['name']} {i}", "output": labels[i % len(labels)]}
                for i in range(n)
            ]
            write_jsonl(tmp_path / entry["data"]["train"], rows)
            if "eval" in entry["data"]:
                write_jsonl(tmp_path / entry["data"]["eval"], rows[:4])
        uri = doc["spec"].get("baseModel", {}).get("uri", "")
        if uri and "://" not in uri and not uri.startswith("/"):
            model = tmp_path / uri  # `mtd validate` checks a local base model is a folder
            model.mkdir(parents=True, exist_ok=True)
            (model / "config.json").write_text("{}", encoding="utf-8")
        path = tmp_path / "mtd.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return path

    return write
