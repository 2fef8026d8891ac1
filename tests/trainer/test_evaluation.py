"""Evaluation: likelihood classification is exact and always valid; results JSON shape."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from mtd_contract.config import EvalConfig, TaskConfig
from mtd_operator.core.confidence import PerExample
from mtd_trainer.answers import FirstLineDone, answer_budget, first_line, one_line
from mtd_trainer.encoding import answer_ids, prompt_ids
from mtd_trainer.evaluation import Scorer, classify, evaluate, generate, label_log_likelihoods

from .conftest import sentiment_task, sounds_task

TEXTS = ["good film", "the food was awful and very sad", "it", "quite nice day " * 6]
STARS = TaskConfig(
    name="stars",
    type="classification",
    instruction="Rate it.",
    labels=["one star", "two stars", "three stars out of three"],  # multi-token labels
    ordinal=True,
    metric="macroF1",
)


def brute_force_scores(model, tokenizer, task: TaskConfig, text: str) -> list[float]:
    """Score each label with its own unpacked forward pass over prompt + label."""
    prompt = prompt_ids(tokenizer, task, [text])[0]
    scores = []
    for option in answer_ids(tokenizer, task.labels or []):
        ids = torch.tensor([[*prompt, *option]])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(ids).logits[0], dim=-1)
        start = len(prompt)
        scores.append(sum(logprobs[start - 1 + i, tok].item() for i, tok in enumerate(option)))
    return scores


@pytest.mark.parametrize("task", [TaskConfig.model_validate(sentiment_task({
    "train": Path("x"), "eval": Path("y")})), STARS])  # fmt: skip
def test_classify_matches_per_label_likelihood(tiny_model: Path, task: TaskConfig) -> None:
    model = LlamaForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    scorer = Scorer(model, tokenizer, batch_size=3, max_length=128)
    scores = label_log_likelihoods(scorer, task, TEXTS)
    expected = torch.tensor([brute_force_scores(model, tokenizer, task, text) for text in TEXTS])
    torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)
    predicted = classify(scorer, task, TEXTS)
    labels = task.labels or []
    assert predicted == [labels[i] for i in expected.argmax(dim=1).tolist()]
    assert set(predicted) <= set(labels)


def test_generate_is_greedy_and_batch_independent(tiny_model: Path) -> None:
    model = LlamaForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    task = TaskConfig.model_validate(sounds_task({"train": Path("x"), "eval": Path("y")}))
    batched = generate(Scorer(model, tokenizer, 4, 128), task, TEXTS, max_new_tokens=5)
    alone = [generate(Scorer(model, tokenizer, 1, 128), task, [text], 5)[0] for text in TEXTS]
    assert batched == alone
    assert all(isinstance(answer, str) for answer in batched)


def test_evaluate_writes_scores_for_every_task(
    tmp_path: Path,
    tiny_model: Path,
    sentiment_data: dict[str, Path],
    sounds_data: dict[str, Path],
) -> None:
    output = tmp_path / "results" / "eval.json"
    config = EvalConfig(
        run_name="test/eval",
        base_model=str(tiny_model),
        tasks=[
            TaskConfig.model_validate(sentiment_task(sentiment_data)),
            TaskConfig.model_validate(sounds_task(sounds_data) | {"metric": "rougeL"}),
        ],
        max_examples=5,
        max_new_tokens=4,
        output_path=str(output),
    )
    results = evaluate(config)
    assert json.loads(output.read_text()) == results
    sentiment, sounds = results["tasks"]["sentiment"], results["tasks"]["sounds"]
    assert (sentiment["metric"], sentiment["examples"]) == ("accuracy", 5)
    assert sentiment["score"] == sentiment["accuracy"]
    scalars = {"metric", "score", "examples", "per_example"}
    assert set(sentiment) == scalars | {"accuracy", "macroF1", "exactMatch"}
    assert (sounds["metric"], sounds["examples"]) == ("rougeL", 5)
    assert set(sounds) == scalars | {"rougeL", "exactMatch", "chrF"}
    for row in results["tasks"].values():
        assert all(0 <= v <= 1 for k, v in row.items() if k not in scalars)
        # What each example contributed rebuilds the score (the operator's bootstrap input).
        items = PerExample.from_result(row)
        assert items is not None and items.count == 5
        assert items.score() == pytest.approx(row["score"], abs=1e-6)


def test_answer_budget_fits_the_longest_reference(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    references = ["good", "the film was very good and the food was fine"]
    longest = max(len(ids) for ids in answer_ids(tokenizer, references))
    budget = answer_budget(tokenizer, references, ceiling=64)
    assert longest <= budget == math.ceil(longest * 1.25)
    assert answer_budget(tokenizer, references, ceiling=3) == 3
    assert answer_budget(tokenizer, [], ceiling=64) == 64
    assert one_line(references) and not one_line(["good\nbad"]) and not one_line([])


def test_first_line_done_needs_text_before_the_break(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    prompt = tokenizer("the\nfilm", add_special_tokens=False)["input_ids"]  # a break: ignored
    rows = ["good", "\ngood", "good\nbad", " \n\nfine\n"]
    answers = [tokenizer(row, add_special_tokens=False)["input_ids"] for row in rows]
    width = max(map(len, answers))
    pad = tokenizer.pad_token_id  # rows that ended are padded on the right, as in generate
    batch = torch.tensor([prompt + row + [pad] * (width - len(row)) for row in answers])
    done = FirstLineDone(tokenizer, len(prompt))(batch, None)
    assert done.tolist() == [False, False, True, True]
    assert [first_line(row) for row in rows] == ["good", "good", "good", "fine"]


def test_single_line_generation_is_the_first_line(tiny_model: Path) -> None:
    model = LlamaForCausalLM.from_pretrained(tiny_model).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    task = TaskConfig.model_validate(sounds_task({"train": Path("x"), "eval": Path("y")}))
    batched, alone = Scorer(model, tokenizer, 4, 128), Scorer(model, tokenizer, 1, 128)
    full = generate(batched, task, TEXTS, max_new_tokens=12)
    # Make the line break as likely as the second answer token of the first text, and a bit
    # more, so that greedy decoding writes a break after some text.
    second = generate(alone, task, TEXTS[:1], max_new_tokens=2)[0]
    second_id = tokenizer(second, add_special_tokens=False)["input_ids"][-1]
    newline = tokenizer("\n", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[newline] = head[second_id] * 1.05
    full = generate(batched, task, TEXTS, max_new_tokens=12)
    assert any("\n" in answer.strip() for answer in full), full  # the case under test occurs
    cut = generate(batched, task, TEXTS, max_new_tokens=12, single_line=True)
    assert cut == [first_line(answer) for answer in full]
    assert all("\n" not in answer for answer in cut)
