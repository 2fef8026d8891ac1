"""How long a generated answer may be, and when a one-line answer is finished.

Greedy decoding stops at the end token or after `max_new_tokens`. A barely trained or
untrained model rarely emits the end token early, so a 64-token budget costs 64
decoding steps per batch even for 10-token headlines: on a CPU that is most of an
evaluation's time. Two rules taken from the task's own reference answers bound it:

* the budget is the longest reference answer (with its end token) plus a quarter, never
  above the configured ceiling: an answer of any reference's length is never cut, and
  a longer one could only lower ROUGE/chrF further (precision falls with every extra
  token);
* when no reference spans two lines, decoding stops at the first line break after some
  text, and the answer is that first line (the text a reader would take as the answer).

The references are the scored examples themselves: they are what the answer is measured
against, and they exist wherever a task is scored (a composition has no training data).
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedTokenizerBase, StoppingCriteria

from .encoding import answer_ids

MARGIN = 1.25  # room above the longest reference, for a slightly wordier right answer


def answer_budget(tokenizer: PreTrainedTokenizerBase, references: list[str], ceiling: int) -> int:
    """New tokens to allow: the longest reference (end token included) × MARGIN, ≤ ceiling."""
    if not references:
        return ceiling
    longest = max(len(ids) for ids in answer_ids(tokenizer, references))
    return max(1, min(ceiling, math.ceil(longest * MARGIN)))


def one_line(references: list[str]) -> bool:
    """Every reference answer is a single line (so an answer ends at its first break)."""
    return bool(references) and all("\n" not in answer.strip() for answer in references)


def first_line(text: str) -> str:
    """The first non-empty line of `text`, stripped."""
    return text.strip().split("\n", 1)[0].strip()


class FirstLineDone(StoppingCriteria):
    """Per sequence: done once its generated text has a line break after some text.

    Decodes only the tokens after `start` (the left-padded prompt width), so a break in
    the prompt or a leading blank line does not count.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, start: int) -> None:
        self.tokenizer = tokenizer
        self.start = start

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: object
    ) -> torch.BoolTensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.start :], skip_special_tokens=True)
        done = ["\n" in text.lstrip() for text in texts]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)  # type: ignore[return-value]
