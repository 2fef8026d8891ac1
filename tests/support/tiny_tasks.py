"""Three toy tasks on the tiny model, shared by the trainer, local, operator and
reliability tests: `sentiment` (binary), `sounds` (generation) and `agree` (binary, a
relabelled sentiment), and one composition of two of them, `sound-sentiment`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

POSITIVE = ["good", "great", "fine", "nice", "happy", "lovely"]
NEGATIVE = ["bad", "awful", "poor", "sad", "ugly", "nasty"]
FILLER = ["the", "film", "was", "food", "day", "very", "quite", "and", "a", "it"]
ANIMALS = {"cat": "meow", "dog": "woof", "cow": "moo", "duck": "quack"}


def sentiment_examples(count: int, seed: int) -> list[dict[str, str]]:
    """Learnable in a few steps: the label is given away by one word of the sentence."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(2, 12))
        cue = rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        words.insert(rng.randint(0, len(words)), cue)
        rows.append({"input": " ".join(words), "output": label})
    return rows


def sound_examples(count: int, seed: int) -> list[dict[str, str]]:
    """ "the <animal> says" → its sound: a generation task the tiny model learns."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        animal = rng.choice(list(ANIMALS))
        rows.append({"input": f"the {animal} says", "output": ANIMALS[animal]})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """`rows` as JSON Lines at `path` (its folder created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


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


def tiny_resource(
    tasks: list[dict[str, Any]],
    base_uri: str = "models/tiny",
    steps: int = 2,
    metadata: dict[str, Any] | None = None,
    compositions: list[dict[str, Any]] | None = None,
    **training: Any,
) -> dict[str, Any]:
    """A MultiTaskDeployment on the tiny model that trains each stage `steps` steps:
    every task counts as high-resource from 35 examples; `training` overrides fields."""
    spec: dict[str, Any] = {
        "baseModel": {"uri": base_uri},
        "tasks": tasks,
        "training": {
            "highResourceMinExamples": 35,
            "stage1": {"maxSteps": steps},
            "stage2": {"maxSteps": steps},
            "baseline": {"maxSteps": steps},
            "batchSize": 4,
            "maxSeqLength": 64,
            "lora": {"rank": 4, "alpha": 8},
            **training,
        },
    }
    if compositions:
        spec["compositions"] = compositions
    return {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": metadata or {"name": "tiny"},
        "spec": spec,
    }
