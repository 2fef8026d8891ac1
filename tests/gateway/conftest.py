"""Fixtures: a catalogue file, the vLLM stand-in on a loopback port, our server (torch).

`served` (our TGI-compatible server on a tiny model) is the serving tests' own fixture,
re-exported here so that the gateway tests run against the very same server.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import LABELS, served  # noqa: F401
from tests.support.net import serve_app

from .vllm_standin import VllmStandIn

BASE_MODEL = "org/tiny-base"


def catalogue_doc(*extra: dict[str, Any]) -> dict[str, Any]:
    """Three tasks as the operator writes them: two on adapters, one on the base model."""
    return {
        "revision": "r1",
        "tasks": [
            {
                "name": "sentiment",
                "type": "classification",
                "instruction": "Classify the sentiment.",
                "labels": LABELS,
                "metric": "accuracy",
                "adapter": "sentiment",
                "servedBy": "multiTask",
                "verdict": "Qualified",
            },
            {
                "name": "sounds",
                "type": "generation",
                "instruction": "What sound does it make?",
                "metric": "rougeL",
                "adapter": "sounds",
                "servedBy": "multiTask",
                "verdict": "Inconclusive",
            },
            {
                "name": "echo",
                "type": "generation",
                "instruction": "Repeat the text.",
                "metric": "rougeL",
                "adapter": None,
                "verdict": "Inconclusive",
            },
            *extra,
        ],
    }


def write_catalogue(path: Path, doc: dict[str, Any]) -> None:
    """Replace the file atomically, as the kubelet swaps a ConfigMap's files."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc), encoding="utf-8")
    os.replace(tmp, path)


@pytest.fixture
def catalogue_file(tmp_path: Path) -> Path:
    path = tmp_path / "catalogue.json"
    write_catalogue(path, catalogue_doc())
    return path


@pytest.fixture
def vllm() -> Iterator[tuple[VllmStandIn, str]]:
    standin = VllmStandIn(
        BASE_MODEL,
        {"sentiment": "/workspace/a/sentiment", "sounds": "/workspace/a/sounds"},
        runtime_lora_updating=True,
    )
    with serve_app(standin.app()) as url:
        yield standin, url
