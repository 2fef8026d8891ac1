"""Fixtures: a catalogue file, the vLLM stand-in on a loopback port (the gateway's own
behaviour, no model), and the real vLLM on a tiny model (what the engine answers).

`real_vllm` is one `vllm serve` (local/engine.py's `LocalEngine`, from the engine venv)
for the whole session: it takes ~30 s to start and this machine runs one at a time. It
serves the tiny Llama's base model; adapters are loaded by whoever uses it, by name.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.net import serve_app

from .vllm_standin import VllmStandIn

BASE_MODEL = "org/tiny-base"
LABELS = ["pos", "neg", "neutral"]
#: The tiny model's max_position_embeddings: vLLM refuses a longer --max-model-len.
TINY_MAX_MODEL_LEN = 512


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


@dataclass(frozen=True)
class RealVllm:
    """The running engine, the tiny base model it serves, and two adapters for it (not
    loaded yet: a test loads them under the names it chooses)."""

    engine: Any  # mtd_operator.local.engine.LocalEngine
    base: Path
    adapters: dict[str, Path]


@pytest.fixture(scope="session")
def real_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealVllm]:
    from mtd_operator.local.engine import LocalEngine
    from tests.support.engine import engine_venv
    from tests.support.models import build_adapter, build_model

    root = tmp_path_factory.mktemp("real-vllm")
    # head_dim 32: vLLM's CPU attention has no kernel for the tiny default's 8.
    base = build_model(root / "base", hidden=64, heads=2)
    adapters = {
        "sentiment": build_adapter(base, root / "sentiment", seed=1),
        "sounds": build_adapter(base, root / "sounds", seed=2),
    }
    engine = LocalEngine(
        root / "engine",
        lora_rank=4,
        max_model_len=TINY_MAX_MODEL_LEN,
        venv=str(engine_venv()),
    )
    with engine:
        engine.ensure(str(base))
        yield RealVllm(engine, base, adapters)
