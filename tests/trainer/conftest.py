"""A tiny random Llama with a real (freshly trained) tokenizer, and toy task data.

Built once per session in a temp folder: nothing comes from a model hub, and every
test trains in seconds on two CPU cores.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.models import build_model
from tests.support.tiny_tasks import sentiment_examples, sound_examples, write_jsonl


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_process() -> Iterator[None]:
    """Tiny matrices gain nothing from threads, and threads spin against each other when
    other processes share the cores; subprocesses (CLI, torchrun) inherit the setting."""
    import torch

    threads, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    torch.set_num_threads(threads)
    if env is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = env


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama folder (hidden 32, 2 layers) with a chat-template tokenizer."""
    return build_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def other_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different tiny base (hidden 64), for adapter mismatch tests."""
    return build_model(tmp_path_factory.mktemp("tiny-llama-64"), hidden=64)


@pytest.fixture
def sentiment_data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "sentiment-train.jsonl", sentiment_examples(64, 2)),
        "eval": write_jsonl(tmp_path / "sentiment-eval.jsonl", sentiment_examples(16, 3)),
    }


@pytest.fixture
def sounds_data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "sounds-train.jsonl", sound_examples(24, 4)),
        "eval": write_jsonl(tmp_path / "sounds-eval.jsonl", sound_examples(8, 5)),
    }


def sentiment_task(data: dict[str, Path]) -> dict[str, Any]:
    return {
        "name": "sentiment",
        "type": "classification",
        "instruction": "Classify the sentiment.",
        "labels": ["pos", "neg"],
        "metric": "accuracy",
        "train_path": str(data["train"]),
        "eval_path": str(data["eval"]),
    }


def sounds_task(data: dict[str, Path]) -> dict[str, Any]:
    return {
        "name": "sounds",
        "type": "generation",
        "instruction": "What sound does it make?",
        "metric": "exactMatch",
        "train_path": str(data["train"]),
        "eval_path": str(data["eval"]),
    }


@pytest.fixture
def train_config(
    tmp_path: Path, tiny_model: Path, sentiment_data: dict[str, Path], sounds_data: dict[str, Path]
) -> Callable[..., dict[str, Any]]:
    """A builder of valid two-task train configs; keyword arguments override fields."""

    def build(name: str = "run", hyperparameters: dict | None = None, **fields: Any) -> dict:
        config = {
            "kind": "train",
            "run_name": f"test/{name}",
            "base_model": str(tiny_model),
            "method": "lora",
            "lora": {"rank": 4, "alpha": 8, "dropout": 0.1},
            "tasks": [sentiment_task(sentiment_data), sounds_task(sounds_data)],
            "sampling": {"strategy": "instance", "rates": {"sentiment": 0.75, "sounds": 0.25}},
            "hyperparameters": {
                "max_steps": 12,
                "batch_size": 4,
                "learning_rate": 3e-3,
                "max_seq_length": 64,
                "checkpoint_every": 4,
                "log_every": 4,
                "seed": 7,
                **(hyperparameters or {}),
            },
            "output_dir": str(tmp_path / name),
        }
        config.update(fields)
        return config

    return build


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any], str], Path]:
    def write(config: dict[str, Any], name: str = "config.json") -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(config), encoding="utf-8")
        return path

    return write
