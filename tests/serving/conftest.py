"""A tiny random Llama, two perturbed LoRA adapters, and the server running on them.

Everything is built on the fly (nothing from a model hub): a BPE tokenizer trained in a
second with a chat template, a 2-layer Llama, and peft adapters whose lora_B weights are
randomised so each adapter really changes the output. One server per session, started
with uvicorn in a thread on a free loopback port.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "Classify the sentiment. Answer with one of: pos, neg, neutral.",
    "the film was good and the food was great",
    "the day was bad, awful and sad",
    "What sound does it make? the cat says meow, the dog says woof, the cow says moo",
    "user assistant system 0123456789 a b c d e f g h i j k l m n o p q r s t u v w x y z",
]
LABELS = ["pos", "neg", "neutral"]
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
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        CORPUS * 20,
        trainers.BpeTrainer(
            vocab_size=350,
            special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
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


def build_adapter(base: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter with random lora_B (peft initialises it to zero, a no-op)."""
    import peft
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type="CAUSAL_LM")
    peft_model = peft.get_peft_model(model, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.8)
    peft_model.save_pretrained(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import uvicorn

    from mtd_trainer.serving import Engine, build_app

    root = tmp_path_factory.mktemp("serving")
    base = build_base(root / "base")
    adapters = {
        "sentiment": build_adapter(base, root / "sentiment", seed=1),
        "sounds": build_adapter(base, root / "sounds", seed=2),
    }
    catalogue = {
        "tasks": [
            {
                "name": "sentiment",
                "type": "classification",
                "instruction": "Classify the sentiment.",
                "labels": LABELS,
                "adapter": "sentiment",
            },
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
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    yield Served(f"http://127.0.0.1:{port}", base, adapters, catalogue)
    server.should_exit = True
    thread.join(timeout=10)


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
