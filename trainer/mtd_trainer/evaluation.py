"""Score tasks: classification by label likelihood, generation by greedy decoding.

Classification never parses free text: each allowed label (with the end token the model
learned to emit after it) is scored by its log-likelihood after the prompt and the best
one wins, so the prediction is always a valid label. Sequences are scored padding-free
(packed, with position ids) and the LM head runs only at the positions that matter.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteriaList,
)

from mtd_contract.config import EvalConfig, TaskConfig

from . import metrics
from .answers import FirstLineDone, answer_budget, first_line, one_line
from .atomic import write_json
from .data import load_examples
from .encoding import answer_ids, prompt_ids
from .errors import InputError
from .modeling import Placement, load_adapter, load_model, load_tokenizer, local_placement
from .verified import scored_digests, write_result

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scorer:
    """What in-process scoring runs with, whatever the task: the model and its tokenizer,
    how many examples a forward pass takes, and the prompt tokens each keeps (its last)."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    batch_size: int
    max_length: int


def classify(scorer: Scorer, task: TaskConfig, texts: list[str]) -> list[str]:
    """The most likely label for each text: always one of the task's labels."""
    assert task.labels is not None
    scores = label_log_likelihoods(scorer, task, texts)
    return [task.labels[i] for i in scores.argmax(dim=1).tolist()]


@torch.no_grad()
def label_log_likelihoods(scorer: Scorer, task: TaskConfig, texts: list[str]) -> torch.Tensor:
    """[texts × labels]: log P(label tokens + eos | prompt).

    Each prompt is computed once: a row holds [prompt, label 1, label 2, ...] per example,
    and a custom mask lets each label see only its own prompt and its own earlier tokens,
    with positions continuing from the prompt, as if each label were decoded after it.
    """
    assert task.labels is not None
    model, tokenizer, batch_size = scorer.model, scorer.tokenizer, scorer.batch_size
    options = answer_ids(tokenizer, task.labels)
    longest = max(len(option) for option in options)
    prompts = [
        prompt[-max(1, scorer.max_length - longest) :]
        for prompt in prompt_ids(tokenizer, task, texts)
    ]
    rows: list[torch.Tensor] = []
    for start in range(0, len(prompts), batch_size):
        batch = prompts[start : start + batch_size]
        tokens: list[int] = []
        positions: list[int] = []
        example: list[int] = []  # which example each token belongs to
        segment: list[int] = []  # 0 for the prompt, j + 1 for label j
        scored: list[int] = []  # positions whose logits predict a label token
        targets: list[int] = []
        for index, prompt in enumerate(batch):
            last_prompt = len(tokens) + len(prompt) - 1
            tokens.extend(prompt)
            positions.extend(range(len(prompt)))
            example.extend([index] * len(prompt))
            segment.extend([0] * len(prompt))
            for j, option in enumerate(options):
                first = len(tokens)
                scored.extend([last_prompt, *range(first, first + len(option) - 1)])
                targets.extend(option)
                tokens.extend(option)
                positions.extend(range(len(prompt), len(prompt) + len(option)))
                example.extend([index] * len(option))
                segment.extend([j + 1] * len(option))
        device = model.device
        ex, seg = torch.tensor(example, device=device), torch.tensor(segment, device=device)
        order = torch.arange(len(tokens), device=device)
        allowed = (
            (ex[:, None] == ex[None, :])
            & (order[None, :] <= order[:, None])
            & ((seg[None, :] == 0) | (seg[:, None] == seg[None, :]))
        )
        mask = torch.zeros(allowed.shape, dtype=model.dtype, device=device)
        mask.masked_fill_(~allowed, torch.finfo(model.dtype).min)
        logits = model(
            input_ids=torch.tensor([tokens], device=device),
            position_ids=torch.tensor([positions], device=device),
            attention_mask=mask[None, None],
            logits_to_keep=torch.tensor(scored, device=device),
            use_cache=False,
        ).logits[0]
        token_scores = torch.log_softmax(logits.float(), dim=-1).gather(
            1, torch.tensor(targets, device=device)[:, None]
        )[:, 0]
        owners = torch.tensor(
            [pair for pair, (_, option) in enumerate(itertools.product(batch, options))
             for _ in option],
            device=device,
        )  # fmt: skip
        pair_scores = torch.zeros(len(batch) * len(options), device=device)
        pair_scores.index_add_(0, owners, token_scores)
        rows.append(pair_scores.view(len(batch), len(options)).cpu())
    return torch.cat(rows)


@torch.no_grad()
def generate(
    scorer: Scorer,
    task: TaskConfig,
    texts: list[str],
    max_new_tokens: int,
    single_line: bool = False,
) -> list[str]:
    """Greedy answers, decoded without special tokens; similar lengths batched together.

    With `single_line`, a sequence stops at its first line break after some text and its
    answer is that first line (`answers.FirstLineDone`)."""
    model, tokenizer, batch_size = scorer.model, scorer.tokenizer, scorer.batch_size
    prompts = [prompt[-scorer.max_length :] for prompt in prompt_ids(tokenizer, task, texts)]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: dict[int, str] = {}
    settings = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chosen)
        # Left padding, so every prompt ends where generation starts.
        pad = tokenizer.pad_token_id
        input_ids = [[pad] * (width - len(prompts[i])) + prompts[i] for i in chosen]
        mask = [[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chosen]
        stopping = StoppingCriteriaList([FirstLineDone(tokenizer, width)] if single_line else [])
        output = model.generate(
            input_ids=torch.tensor(input_ids, device=model.device),
            attention_mask=torch.tensor(mask, device=model.device),
            generation_config=settings,
            stopping_criteria=stopping,
        )
        for i, row in zip(chosen, output[:, width:].tolist(), strict=True):
            text = tokenizer.decode(row, skip_special_tokens=True)
            answers[i] = first_line(text) if single_line else text.strip()
    return [answers[i] for i in range(len(prompts))]


def score_task(
    scorer: Scorer, task: TaskConfig, examples: datasets.Dataset, max_new_tokens: int
) -> dict[str, Any]:
    """{"metric", "score", "examples", <every metric of the task type>, "per_example"} for
    one task; "per_example" lets the operator put a confidence interval on the ratio."""
    texts, references = examples["input"], examples["output"]
    if task.type == "classification":
        assert task.labels is not None
        predictions = classify(scorer, task, texts)
        scores = metrics.classification_scores(predictions, references, task.labels, task.ordinal)
    else:
        # Sized from the references: see answers.py (the ceiling is the configured budget).
        answers = list(references)
        budget = answer_budget(scorer.tokenizer, answers, max_new_tokens)
        log.info("%s: up to %d new tokens, one line: %s", task.name, budget, one_line(answers))
        predictions = generate(scorer, task, texts, budget, one_line(answers))
        scores = metrics.generation_scores(predictions, references)
    return metrics.task_row(task.metric, scores, predictions, references, task.labels)


def eval_examples(tasks: list[TaskConfig], max_examples: int | None) -> dict[str, datasets.Dataset]:
    """Each task's validated eval data (its first `max_examples`); missing paths are errors."""
    loaded = {}
    for index, task in enumerate(tasks):
        if not task.eval_path:
            raise InputError(f"tasks[{index}].eval_path: task {task.name!r} has no eval data")
        examples = load_examples(task.eval_path, task)
        if max_examples is not None and len(examples) > max_examples:
            examples = examples.select(range(max_examples))
        loaded[task.name] = examples
    return loaded


def load_for_inference(
    base_model: str, adapter: str | None, placement: Placement | None = None
) -> PreTrainedModel:
    """The base model, with the adapter merged in, or a full fine-tuned model folder, on
    the GPU when there is one (`local_placement`)."""
    placement = placement or local_placement()
    if adapter and not (Path(adapter) / "adapter_config.json").is_file():
        return load_model(adapter, field="adapter", placement=placement)
    model = load_model(base_model, placement=placement)
    if adapter:
        model = load_adapter(model, adapter, base_model, "adapter", trainable=False)
        model = model.merge_and_unload()
    return model


def evaluate(config: EvalConfig) -> dict[str, Any]:
    """Run an EvalConfig and write its results JSON atomically to `output_path`: through
    the serving engine when the config names one (engine_scoring.py), else in process."""
    tokenizer = load_tokenizer(config.base_model)
    examples = eval_examples(config.tasks, config.max_examples)
    scored = scored_digests(
        Path(config.output_path), (config.adapter_of(task.name) for task in config.tasks)
    )
    if config.engine is not None:
        from .engine_scoring import answers_path

        results = _evaluate_served(config, tokenizer, examples)
        answers = answers_path(config.output_path)
        return write_result(Path(config.output_path), {**results, "scored": scored}, [answers])
    models: dict[str | None, PreTrainedModel] = {}
    results: dict[str, Any] = {"run_name": config.run_name, "tasks": {}}
    for task in config.tasks:
        adapter = config.adapter_of(task.name)
        if adapter not in models:  # one model at a time: per-task adapters do not pile up
            models.clear()
            models[adapter] = load_for_inference(config.base_model, adapter).eval()
        scorer = Scorer(models[adapter], tokenizer, config.batch_size, config.max_seq_length)
        row = score_task(scorer, task, examples[task.name], config.max_new_tokens)
        log.info(
            "%s: %s %.4f on %d examples", task.name, row["metric"], row["score"], row["examples"]
        )
        results["tasks"][task.name] = row
    return write_result(Path(config.output_path), {**results, "scored": scored}, [])


def _evaluate_served(
    config: EvalConfig, tokenizer: PreTrainedTokenizerBase, examples: dict[str, datasets.Dataset]
) -> dict[str, Any]:
    from .engine_scoring import answers_path, connect, score_task_served

    assert config.engine is not None
    results: dict[str, Any] = {"run_name": config.run_name, "tasks": {}}
    answers: dict[str, list[str]] = {}
    upstream = connect(config.engine)
    try:
        for task in config.tasks:
            row, answers[task.name] = score_task_served(
                upstream,
                config.engine.adapters[task.name],
                tokenizer,
                task,
                examples[task.name],
                config.max_new_tokens,
                config.engine.concurrency,
            )
            log.info(
                "%s: %s %.4f on %d examples (served answers, %s)",
                task.name,
                row["metric"],
                row["score"],
                row["examples"],
                config.engine.url,
            )
            results["tasks"][task.name] = row
    finally:
        upstream.close()
    write_json(answers_path(config.output_path), answers)
    return results
