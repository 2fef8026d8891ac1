"""A tiny random Llama with a freshly trained BPE tokenizer, and LoRA adapters for it.

Built on the fly in a few seconds on CPU: nothing comes from a model hub. The trainer,
serving, local, operator and reliability tests all use these builders.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .tiny_tasks import sentiment_examples, sound_examples

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|im_start|>", "<|im_end|>"]


def toy_corpus() -> list[str]:
    """The toy tasks' sentences: a tokenizer trained on them splits their words whole."""
    corpus = [row["input"] + " " + row["output"] for row in sentiment_examples(300, 1)]
    corpus += [row["input"] + " " + row["output"] for row in sound_examples(50, 1)]
    return [*corpus, "Classify the sentiment. Answer with one of: pos, neg.", "user assistant"]


def build_tokenizer(
    folder: Path, chat_template: str | None, corpus: Sequence[str], vocab_size: int
) -> Any:
    """A byte-level BPE tokenizer with the chat special tokens, saved into `folder`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        corpus,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=SPECIAL_TOKENS,
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


def build_model(
    folder: Path,
    hidden: int = 32,
    chat_template: str | None = CHAT_TEMPLATE,
    corpus: Sequence[str] | None = None,
    vocab_size: int = 400,
    heads: int = 4,
) -> Path:
    """A 2-layer Llama (seeded, so the same every time) and its tokenizer in `folder`."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(folder, chat_template, corpus or toy_corpus(), vocab_size)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=min(2, heads),
        max_position_embeddings=512,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def random_lora(base: Path, seed: int, scale: float = 0.8) -> Any:
    """A rank-4 LoRA on every linear layer of `base` with random lora_B (peft
    initialises it to zero, a no-op), as a peft model."""
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
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    return peft_model


def build_adapter(base: Path, folder: Path, seed: int) -> Path:
    """A LoRA adapter with random lora_B, saved by peft."""
    random_lora(base, seed).save_pretrained(folder)
    return folder
