"""Score tasks through the serving engine: the answers users get, not a stand-in for them.

Every eval example is asked exactly as the task gateway asks it (`mtd_contract.upstream`:
the prompt training formatted, the engine's adapter name, guided choice among the labels
for classification, greedy decoding), so a verdict describes served answers. Measured on
the quickstart's adapters, the trainer's own label-likelihood scoring agreed with vLLM's
answers on only 90.5% of classification examples (70% on one task): scoring in process
described other answers than users got about one time in ten.

Generation asks for at most the reference-sized budget (answers.py) and, when every
reference is one line, scores the answer's first line, as in-process scoring does.
Requests go out concurrently; the engine batches them.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import datasets
import httpx
from transformers import PreTrainedTokenizerBase

from mtd_contract.config import EngineScoring, TaskConfig
from mtd_contract.upstream import PromptFormat, Question, Upstream, UpstreamError

from . import metrics
from .answers import answer_budget, first_line, one_line
from .errors import InputError

log = logging.getLogger(__name__)
logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per eval example
#: Per scoring request (evaluation only; the gateway has its own, mtd_contract.limits): a CPU
#: engine answering a batch of long generations can take minutes.
SCORING_REQUEST_TIMEOUT_S = 600.0


def wait_ready(url: str, timeout: float) -> None:
    """Until the engine's /health answers 200 (an engine in the evaluation's own pod loads
    the model while the evaluation starts)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise UpstreamError(None, f"the engine at {url} was not ready after {timeout:.0f}s")
        time.sleep(2)


def connect(engine: EngineScoring) -> Upstream:
    """The engine, asked as the gateway asks it (vLLM, with its API key if it has one)."""
    if engine.ready_timeout_s:
        log.info("waiting up to %.0fs for the engine at %s", engine.ready_timeout_s, engine.url)
        wait_ready(engine.url, engine.ready_timeout_s)
    api_key = None
    if engine.api_key_file:
        try:
            api_key = Path(engine.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"engine.api_key_file: {exc}") from None
    return Upstream(
        engine.url,
        "vllm",
        timeout=SCORING_REQUEST_TIMEOUT_S,
        base_model=engine.base_model,
        api_key=api_key,
    )


def served_answers(
    upstream: Upstream,
    adapter: str | None,
    task: TaskConfig,
    texts: list[str],
    max_tokens: int,
    concurrency: int,
    prompt_format: PromptFormat = "chat",
) -> list[str]:
    """The engine's answer to each text, in order; a refusal names the example."""

    def ask(index: int) -> str:
        try:
            return upstream.answer(
                Question(
                    adapter,
                    task.instruction,
                    texts[index],
                    task.labels,
                    max_tokens,
                    prompt_format=prompt_format,
                )
            )
        except UpstreamError as exc:
            raise UpstreamError(
                exc.status, f"task {task.name!r}, eval example {index + 1}: {exc.message}"
            ) from None

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [answer.output for answer in pool.map(ask, range(len(texts)))]


def score_task_served(
    upstream: Upstream,
    adapter: str | None,
    tokenizer: PreTrainedTokenizerBase,
    task: TaskConfig,
    examples: datasets.Dataset,
    max_new_tokens: int,
    concurrency: int,
) -> tuple[dict[str, Any], list[str]]:
    """One task's results row (the shape `evaluation.score_task` writes), from the engine,
    and the answers it scored (in eval-file order)."""
    texts, references = list(examples["input"]), list(examples["output"])
    # The prompt training used: the chat template, or the plain prompt without one.
    fmt: PromptFormat = "chat" if tokenizer.chat_template else "plain"
    if task.type == "classification":
        assert task.labels is not None
        # Room for the longest label (the gateway's own classify budget is per character).
        predictions = served_answers(
            upstream, adapter, task, texts, max_new_tokens, concurrency, fmt
        )
        scores = metrics.classification_scores(predictions, references, task.labels, task.ordinal)
    else:
        budget = answer_budget(tokenizer, references, max_new_tokens)
        single = one_line(references)
        log.info("%s: up to %d new tokens, one line: %s (engine)", task.name, budget, single)
        answers = served_answers(upstream, adapter, task, texts, budget, concurrency, fmt)
        predictions = [first_line(a) if single else a.strip() for a in answers]
        scores = metrics.generation_scores(predictions, references)
    row = metrics.task_row(task.metric, scores, predictions, references, task.labels)
    return {**row, "scored_by": "engine"}, predictions


def answers_path(output_path: str) -> Path:
    """Where the served answers themselves go, beside the results (kept out of the results
    file, which the operator publishes whole)."""
    path = Path(output_path)
    return path.with_name(f"{path.stem}.answers.json")
