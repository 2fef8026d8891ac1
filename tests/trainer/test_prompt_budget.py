"""What the spec accepts trains and serves: a task whose instruction and label list leave
no room for an input within the sequence length is refused before training, naming the
field (issue #29: 1,000 labels are allowed, but not every 1,000 labels fit every model)."""

from __future__ import annotations

import pytest

from mtd_contract.config import TaskConfig
from mtd_contract.limits import MAX_LABEL_CHARS, MAX_LABELS
from mtd_trainer.encoding import check_prompt_fits
from mtd_trainer.errors import InputError
from mtd_trainer.modeling import load_tokenizer
from tests.support.models import build_model


def task(labels: list[str], instruction: str = "Pick one.") -> TaskConfig:
    return TaskConfig(
        name="many", type="classification", instruction=instruction, labels=labels,
        metric="accuracy",
    )  # fmt: skip


@pytest.mark.parametrize("template", [True, False], ids=["chat template", "plain prompt"])
def test_a_label_list_longer_than_the_sequence_is_refused_naming_the_labels(tmp_path, template):
    folder = build_model(tmp_path / "m", **({} if template else {"chat_template": None}))
    tokenizer = load_tokenizer(str(folder))
    assert bool(tokenizer.chat_template) is template
    check_prompt_fits(tokenizer, task([f"label {i}" for i in range(70)]), 4096)
    most = task([f"{i:04d}" + "x" * (MAX_LABEL_CHARS - 4) for i in range(MAX_LABELS)])
    with pytest.raises(InputError, match=r"task many: its labels make every prompt \d+ tokens"):
        check_prompt_fits(tokenizer, most, 4096)
    with pytest.raises(InputError, match=r"shorten the task's instruction"):
        check_prompt_fits(tokenizer, task(["a", "b"], "Read this. " * 50), 64)
