"""A tiny random Llama, two perturbed LoRA adapters, and the server running on them.

Everything is built on the fly (nothing from a model hub): a BPE tokenizer trained in a
second with a chat template, a 2-layer Llama, and peft adapters whose lora_B weights are
randomised so each adapter really changes the output. One server per session, started
with uvicorn in a thread on a free loopback port.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.models import build_adapter, build_model
from tests.support.net import serve_app

CORPUS = [
    "Classify the sentiment. Answer with one of: pos, neg, neutral.",
    "the film was good and the food was great",
    "the day was bad, awful and sad",
    "What sound does it make? the cat says meow, the dog says woof, the cow says moo",
    "user assistant system 0123456789 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]
LABELS = ["pos", "neg", "neutral"]
# The sentiment task's catalogue entry, on the adapter of the same name.
SENTIMENT_ENTRY: dict[str, Any] = {
    "name": "sentiment",
    "type": "classification",
    "instruction": "Classify the sentiment.",
    "labels": LABELS,
    "adapter": "sentiment",
}
MAX_INPUT_TOKENS = 200
MAX_TOTAL_TOKENS = 256


@dataclass(frozen=True)
class Served:
    """What the tests need to know about the running server."""

    url: str
    base: Path
    adapters: dict[str, Path]
    catalogue: dict[str, Any]


def build_base(folder: Path) -> Path:
    """The shared tiny Llama, its tokenizer trained on the serving prompts above."""
    return build_model(folder, corpus=CORPUS * 20, vocab_size=350)


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from mtd_trainer.serving import Engine, build_app

    root = tmp_path_factory.mktemp("serving")
    base = build_base(root / "base")
    adapters = {
        "sentiment": build_adapter(base, root / "sentiment", seed=1),
        "sounds": build_adapter(base, root / "sounds", seed=2),
    }
    catalogue = {
        "tasks": [
            SENTIMENT_ENTRY,
            {
                "name": "sounds",
                "type": "generation",
                "instruction": "What sound does it make?",
                "adapter": "sounds",
            },
        ]
    }
    (root / "catalogue.json").write_text(json.dumps(catalogue), encoding="utf-8")
    engine = Engine(
        base,
        adapters,
        model_id="tiny-llama",
        max_input_tokens=MAX_INPUT_TOKENS,
        max_total_tokens=MAX_TOTAL_TOKENS,
    )
    app = build_app(engine, root / "catalogue.json")
    with serve_app(app) as url:
        yield Served(url, base, adapters, catalogue)


@pytest.fixture(scope="session")
def reference(served: Served) -> Any:
    """The same base and adapters loaded directly with peft: what the server must match."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(served.base)
    model = AutoModelForCausalLM.from_pretrained(served.base)
    model = PeftModel.from_pretrained(model, str(served.adapters["sentiment"]), "sentiment")
    model.load_adapter(str(served.adapters["sounds"]), "sounds")
    model.eval()
    return tokenizer, model
