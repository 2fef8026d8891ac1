"""Turn an example into token ids: the prompt as serving will send it, then the answer.

The prompt is the tokenizer's chat template applied to `prompts.messages` (so training
sees exactly what `/v1/chat/completions` will feed the model), or the plain
instruction/response format when the tokenizer has none. Only the answer and its end
token are learned; sequences that are too long lose tokens from the left, so the answer
is kept.
"""

from __future__ import annotations

from typing import Any

import datasets
from transformers import PreTrainedTokenizerBase

from mtd_contract.config import TaskConfig
from mtd_contract.prompts import messages, plain_prompt

from .errors import InputError

IGNORE = -100  # label value the loss skips


def task_labels(task: TaskConfig) -> list[str] | None:
    return task.labels if task.type == "classification" else None


def prompt_ids(tokenizer: PreTrainedTokenizerBase, task: TaskConfig, texts: list[str]) -> list:
    """Token ids of the prompts for `texts`, ending where the model starts answering."""
    labels = task_labels(task)
    if tokenizer.chat_template:
        prompts = [
            tokenizer.apply_chat_template(
                messages(task.instruction, text, labels), add_generation_prompt=True, tokenize=False
            )
            for text in texts
        ]
        # The template already spells out any BOS token; adding it again would double it.
        return tokenizer(prompts, add_special_tokens=False)["input_ids"]
    prompts = [plain_prompt(task.instruction, text, labels) for text in texts]
    return tokenizer(prompts)["input_ids"]


def check_prompt_fits(
    tokenizer: PreTrainedTokenizerBase, task: TaskConfig, max_length: int
) -> None:
    """The part of every prompt that is not the input (the instruction, and a
    classification task's label list) must leave room for an input and an answer within
    `max_length` tokens; else every example would be cut to nothing the model can learn
    from, and the engine would refuse every request of the task (its context is no
    longer). Raises InputError naming the field to change."""
    (fixed,) = prompt_ids(tokenizer, task, [""])
    if len(fixed) < max_length:
        return
    field = "instruction"
    if task_labels(task):
        bare = task.model_copy(update={"type": "generation", "labels": None})
        (without_labels,) = prompt_ids(tokenizer, bare, [""])
        field = "instruction" if len(without_labels) >= max_length else "labels"
    raise InputError(
        f"task {task.name}: its {field} {'make' if field == 'labels' else 'makes'} every "
        f"prompt {len(fixed)} tokens before the "
        f"input, at least hyperparameters.max_seq_length ({max_length}, "
        "spec.training.maxSeqLength); shorten the task's "
        f"{'label list or labels' if field == 'labels' else 'instruction'} or raise the limit"
    )


def answer_ids(tokenizer: PreTrainedTokenizerBase, answers: list[str]) -> list[list[int]]:
    """Token ids of each answer followed by the end-of-sequence token that stops decoding."""
    if tokenizer.eos_token_id is None:
        raise InputError("base_model: the tokenizer has no eos_token; answers could not end")
    ids = tokenizer(answers, add_special_tokens=False)["input_ids"]
    return [[*answer, tokenizer.eos_token_id] for answer in ids]


def encode_batch(
    batch: dict[str, list[str]],
    tokenizer: PreTrainedTokenizerBase,
    task: TaskConfig,
    max_length: int,
) -> dict[str, Any]:
    """`datasets.map` function: input_ids and labels (prompt masked), left-truncated."""
    input_ids, labels = [], []
    for prompt, answer in zip(
        prompt_ids(tokenizer, task, batch["input"]),
        answer_ids(tokenizer, batch["output"]),
        strict=True,
    ):
        input_ids.append([*prompt, *answer][-max_length:])
        labels.append([*([IGNORE] * len(prompt)), *answer][-max_length:])
    return {"input_ids": input_ids, "labels": labels}


def encode_dataset(
    examples: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskConfig,
    max_length: int,
) -> datasets.Dataset:
    return examples.map(
        encode_batch,
        batched=True,
        remove_columns=examples.column_names,
        fn_kwargs={"tokenizer": tokenizer, "task": task, "max_length": max_length},
        desc=f"tokenising {task.name}",
    )
