"""A tiny random Llama with a real (freshly trained) tokenizer, and toy task data.

Built once per session in a temp folder: nothing comes from a model hub, and every
test trains in seconds on two CPU cores.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
POSITIVE = ["good", "great", "fine", "nice", "happy", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "sad", "ugly", "nasty"]
FILLER = ["the", "film", "was", "food", "day", "very", "quite", "and", "a", "it"]
ANIMALS = {"cat": "meow", "dog": "woof", "cow": "moo", "duck": "quack"}


def sentiment_examples(count: int, seed: int) -> list[dict[str, str]]:
    """Learnable in a few steps: the label is given away by one word of the sentence."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        cue = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words.insert(rng.randint(0, len(words)), cue)
        rows.append({"input": " ".join(words), "output": label})
    return rows


def sound_examples(count: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        animal = rng.choice(list(ANIMALS))
        rows.append({"input": f"the {animal} says", "output": ANIMALS[animal]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def build_tokenizer(folder: Path, chat_template: str | None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [row["input"] + " " + row["output"] for row in sentiment_examples(300, 1)]
    corpus += [row["input"] + " " + row["output"] for row in sound_examples(50, 1)]
    corpus += ["Classify the sentiment. Answer with one of: pos, neg.", "user assistant"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<pad>", "<|im_start|>", "<|im_end|>"]
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>"
    )
    if chat_template:
        tokenizer.chat_template = chat_template
    tokenizer.save_pretrained(folder)
    return tokenizer


def build_model(folder: Path, hidden: int = 32, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(folder, chat_template)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


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
