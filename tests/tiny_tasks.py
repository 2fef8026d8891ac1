"""Three toy tasks on the tiny model, shared by the local, operator and reliability tests:
`sentiment` (binary), `sounds` (generation) and `agree` (binary, a relabelled sentiment),
and one composition of two of them, `sound-sentiment`."""

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


def write_composition_data(folder: Path) -> None:
    """`sound-sentiment`: "the cow says; <sentence>" → "<sound> <label>" (both tasks' skills)."""
    sounds, sentences = sound_examples(24, 7), sentiment_examples(24, 8)
    rows = [
        {"input": f"{s['input']}; {t['input']}", "output": f"{s['output']} {t['output']}"}
        for s, t in zip(sounds, sentences, strict=True)
    ]
    write_jsonl(folder / "data" / "sound-sentiment.train.jsonl", rows[:16])
    write_jsonl(folder / "data" / "sound-sentiment.eval.jsonl", rows[16:])


SOUND_SENTIMENT: dict[str, Any] = {
    "name": "sound-sentiment",
    "tasks": ["sounds", "sentiment"],
    "weights": [1.0, 0.5],
    "merge": "cat",
    "instruction": "Say the sound, then the sentiment.",
    "data": {"eval": "data/sound-sentiment.eval.jsonl"},
    "calibration": {"data": "data/sound-sentiment.train.jsonl", "rank": 2, "maxSteps": 3},
    "baseline": {"score": 0.05},
}
