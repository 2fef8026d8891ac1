"""Builders for specs and JSON Lines data used across the core tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def task(
    name: str,
    kind: str = "classification",
    labels: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": kind,
        "instruction": f"Do {name}.",
        "data": {"train": f"data/{name}/train.jsonl", "eval": f"data/{name}/eval.jsonl"},
    }
    if kind == "classification":
        body["labels"] = labels or ["no", "yes"]
    body.update(extra)
    return body


def resource(tasks: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": "support"},
        "spec": {"baseModel": {"uri": "models/base"}, "tasks": tasks, **spec},
    }
