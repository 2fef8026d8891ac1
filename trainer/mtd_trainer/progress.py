"""How far a run got (saved in every checkpoint), and the steps since the last metrics row.

`Progress` serializes to the same JSON keys the checkpoints' progress.json always had
(`step`, `tokens`, `seconds`, `loss`, `evals`, `sampler`), so a checkpoint written before
it existed still resumes, and one written now resumes under older code.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Evaluation:
    """One interval evaluation: each task's score at `step` (for the saturation step)."""

    step: int
    scores: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "scores": dict(self.scores)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Evaluation:
        return cls(step=int(data["step"]), scores=dict(data["scores"]))


@dataclass
class Progress:
    """What a resumed run needs to continue where it stopped, and result.json reports."""

    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    #: The last step's loss (None before the first step).
    loss: float | None = None
    evals: list[Evaluation] = field(default_factory=list)
    #: `TaskSampler.state_dict()` as of the checkpoint (None before the first one).
    sampler: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "seconds": self.seconds,
            "loss": self.loss,
            "evals": [evaluation.to_json() for evaluation in self.evals],
            "sampler": self.sampler,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Progress:
        """Every key is required (KeyError names a missing one): a progress.json without
        them was not written by this trainer."""
        loss = data["loss"]
        return cls(
            step=int(data["step"]),
            tokens=int(data["tokens"]),
            seconds=float(data["seconds"]),
            loss=None if loss is None else float(loss),
            evals=[Evaluation.from_json(entry) for entry in data["evals"]],
            sampler=data["sampler"],
        )


@dataclass
class Window:
    """The optimizer steps since the last metrics row, which the next row averages."""

    loss: float = 0.0
    steps: int = 0
    tokens: int = 0
    tasks: Counter[str] = field(default_factory=Counter)
    start: float = field(default_factory=time.monotonic)

    def add(self, loss: float, tokens: int, tasks: Counter[str]) -> None:
        self.loss += loss
        self.steps += 1
        self.tokens += tokens
        self.tasks.update(tasks)

    def row(self, step: int, lr: float) -> dict[str, Any]:
        """The metrics.jsonl row for the window ending at `step`."""
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return {
            "step": step,
            "loss": self.loss / self.steps,
            "lr": lr,
            "tokens_per_second": self.tokens / elapsed,
            "examples_per_task": dict(self.tasks),
        }
