"""Three toy tasks on the tiny model, shared by the local, operator and reliability tests:
`sentiment` (binary), `sounds` (generation) and `agree` (binary, a relabelled sentiment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.trainer.conftest import sentiment_examples, sound_examples, write_jsonl


def write_task_data(folder: Path) -> None:
    """`folder/data/<task>.{train,eval}.jsonl` for the three toy tasks."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_jsonl(data / "sentiment.train.jsonl", sentiment_examples(40, 1))
    write_jsonl(data / "sentiment.eval.jsonl", sentiment_examples(8, 2))
    write_jsonl(data / "sounds.train.jsonl", sound_examples(20, 3))
    write_jsonl(data / "sounds.eval.jsonl", sound_examples(6, 4))
    flipped = [
        {**row, "output": "yes" if row["output"] == "pos" else "no"}
        for row in sentiment_examples(30, 5)
    ]
    write_jsonl(data / "agree.train.jsonl", flipped)
    write_jsonl(data / "agree.eval.jsonl", flipped[:6])


def task(name: str, kind: str, **extra: Any) -> dict[str, Any]:
    """A task entry of a spec whose data `write_task_data` wrote."""
    return {
        "name": name,
        "type": kind,
        "instruction": f"Task {name}.",
        "data": {"train": f"data/{name}.train.jsonl", "eval": f"data/{name}.eval.jsonl"},
        **extra,
    }
