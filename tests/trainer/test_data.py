"""Data validation with file:line errors, prompt formatting, loss masking, packing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, DataCollatorWithFlattening, LlamaForCausalLM

from mtd_contract.config import TaskConfig
from mtd_contract.prompts import messages, plain_prompt
from mtd_trainer.data import load_examples
from mtd_trainer.encoding import IGNORE, encode_batch, prompt_ids
from mtd_trainer.errors import InputError

TASK = TaskConfig(
    name="sentiment",
    type="classification",
    instruction="Classify the sentiment.",
    labels=["pos", "neg"],
    metric="accuracy",
)
GOOD = '{"input": "good film", "output": "pos"}\n'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([GOOD, "{not json\n"], ":2: not valid JSON"),
        ([GOOD, "\n", '{"output": "pos"}\n'], ":3: missing key(s) input"),
        ([GOOD, '{"input": "x"}\n'], ":2: missing key(s) output"),
        ([GOOD, '{"input": 3, "output": "pos"}\n'], ":2: 'input' must be a string"),
        ([GOOD, '["x", "pos"]\n'], ":2: expected an object"),
        (
            [GOOD, '{"input": "x", "output": "maybe"}\n'],
            ":2: output 'maybe' is not a label; allowed: pos",
        ),
        (["\n", "  \n"], ": empty file, no examples"),
        ([GOOD, "[" * 3000 + "]" * 3000 + "\n"], ":2: not a record: JSON nested too deeply"),
        (
            [GOOD, '{"input": "x", "output": "AWS_SECRET=hunter2"}\n'],
            ":2: output 'AWS_SECRET=h'... (18 characters) is not a label; allowed",
        ),
    ],
)
def test_bad_lines_are_rejected_with_file_and_line(
    tmp_path: Path, lines: list[str], message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_examples(str(path), TASK)
    assert str(caught.value).startswith(str(path.resolve()) + message)


def test_missing_file_names_the_task(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no such data file \(task 'sentiment'\)"):
        load_examples(str(tmp_path / "absent.jsonl"), TASK)


def test_good_file_loads_and_an_edit_is_seen(tmp_path: Path) -> None:
    path = tmp_path / "good.jsonl"
    path.write_text(GOOD + '{"input": "bad film", "output": "neg", "extra": [1]}\n')
    examples = load_examples(str(path), TASK)
    assert examples["output"] == ["pos", "neg"]
    path.write_text(GOOD * 3)
    assert len(load_examples(str(path), TASK)) == 3


def test_prompt_is_the_chat_template_of_the_shared_messages(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    expected = tokenizer.apply_chat_template(
        messages(TASK.instruction, "good film", TASK.labels),
        add_generation_prompt=True,
        tokenize=False,
    )
    assert expected.endswith("<|im_start|>assistant\n")
    assert tokenizer.decode(prompt_ids(tokenizer, TASK, ["good film"])[0]) == expected


def test_plain_format_without_chat_template(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    tokenizer.chat_template = None
    text = tokenizer.decode(prompt_ids(tokenizer, TASK, ["good film"])[0], skip_special_tokens=True)
    assert text == plain_prompt(TASK.instruction, "good film", TASK.labels)


def test_loss_only_on_answer_and_left_truncation(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    batch = {"input": ["good film", "very " * 80 + "good"], "output": ["pos", "pos"]}
    encoded = encode_batch(batch, tokenizer, TASK, max_length=40)
    answer = [*tokenizer("pos", add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
    for ids, labels in zip(encoded["input_ids"], encoded["labels"], strict=True):
        assert len(ids) == len(labels) <= 40
        assert [label for label in labels if label != IGNORE] == answer
        assert ids[-len(answer) :] == answer
    long_ids = encoded["input_ids"][1]
    assert len(long_ids) == 40  # truncated from the left: the start of the prompt is gone
    assert tokenizer.decode(long_ids).count("Classify") == 0


def test_packed_rows_score_like_separate_sequences(tiny_model: Path) -> None:
    """Padding-free packing must not let one example attend to another."""
    model = LlamaForCausalLM.from_pretrained(tiny_model).eval()
    first, second = list(range(5, 16)), list(range(20, 27))
    batch = DataCollatorWithFlattening()(
        [{"input_ids": first, "labels": first}, {"input_ids": second, "labels": second}]
    )
    with torch.no_grad():
        packed = model(
            input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False
        ).logits[0]
        alone = [model(input_ids=torch.tensor([ids])).logits[0] for ids in (first, second)]
    torch.testing.assert_close(packed, torch.cat(alone), rtol=1e-4, atol=1e-5)
