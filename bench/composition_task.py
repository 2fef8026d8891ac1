"""The composed task of the composition benchmark: BBC article → "<topic>: <headline>".

Its fixed settings per scale, the join of `bbc-topic` and `bbc-headline` on the article,
the output format (parsing, in-format test) and the per-component scores. Pure but for
reading and writing the joined JSONL files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench.scales import BASE_MODEL
from bench.specs import eval_config, split_path, task_definitions

TOPIC, HEADLINE = "bbc-topic", "bbc-headline"
NAME = "bbc-topic-headline"
INSTRUCTION = (
    "Give the topic of the BBC news article (business, entertainment, politics, sport or "
    "tech), a colon, then its headline."
)
MERGE_WEIGHTS = (1.0, 1.0)
CONTROL = "calibration-only"


@dataclass(frozen=True)
class Settings:
    test_examples: int | None  # first N of the joined test split (None: all)
    calibration_examples: int  # first N of the joined train split
    calibration_steps: int
    calibration_rank: int
    calibration_learning_rate: float
    max_new_tokens: int  # room for "<topic>: " and a headline


SETTINGS: dict[str, Settings] = {
    # 40 steps of 4 (the quick scale's batch): one pass over 160 examples.
    "quick": Settings(100, 160, 40, 4, 1e-3, 32),
    "full": Settings(None, 200, 50, 4, 1e-3, 56),
}


def compose_output(topic: str, headline: str) -> str:
    return f"{topic}: {headline}"


def join_examples(
    topic_rows: list[dict[str, str]], headline_rows: list[dict[str, str]]
) -> list[dict[str, str]]:
    """{"input", "output": "<topic>: <headline>"} per article, in the topic file's order.

    The two files must hold the same articles (inputs), each once: anything else means
    they do not come from the same split and the join would be wrong.
    """
    headlines: dict[str, str] = {}
    for row in headline_rows:
        if row["input"] in headlines:
            raise ValueError(f"{HEADLINE}: an article occurs twice: {row['input'][:60]!r}")
        headlines[row["input"]] = row["output"]
    seen: set[str] = set()
    joined = []
    for row in topic_rows:
        text = row["input"]
        if text in seen:
            raise ValueError(f"{TOPIC}: an article occurs twice: {text[:60]!r}")
        seen.add(text)
        if text not in headlines:
            raise ValueError(f"{TOPIC}: an article has no headline: {text[:60]!r}")
        joined.append({"input": text, "output": compose_output(row["output"], headlines[text])})
    missing = set(headlines) - seen
    if missing:
        raise ValueError(f"{HEADLINE}: {len(missing)} articles have no topic")
    return joined


def parse_output(text: str, labels: list[str]) -> tuple[str | None, str]:
    """(topic, headline) of an output meant to read "<topic>: <headline>".

    The topic is the text before the first ':' when it is one of the labels (case and
    surrounding spaces ignored); then the headline is the rest. An output that is just a
    label is (label, ""). Otherwise the output is out of format: (None, the whole text),
    since a colon may belong to a headline ("Blair: I will stay").
    """
    allowed = {label.casefold(): label for label in labels}
    stripped = text.strip()
    head, colon, rest = stripped.partition(":")
    if colon and head.strip().casefold() in allowed:
        return allowed[head.strip().casefold()], rest.strip()
    if stripped.rstrip(".").casefold() in allowed:
        return allowed[stripped.rstrip(".").casefold()], ""
    return None, stripped


def in_format(text: str, labels: list[str]) -> bool:
    """Whether an output reads "<label>: <something>"."""
    topic, headline = parse_output(text, labels)
    return topic is not None and bool(headline) and ":" in text


def component_scores(
    predictions: list[str], references: list[str], labels: list[str]
) -> dict[str, float]:
    """Whole-output ROUGE-L, topic accuracy, headline ROUGE-L, share in format."""
    from mtd_trainer import metrics

    parsed = [parse_output(p, labels) for p in predictions]
    wanted = [parse_output(r, labels) for r in references]
    if any(topic is None for topic, _ in wanted):
        raise ValueError("a reference is not '<topic>: <headline>'")
    return {
        "rougeL": metrics.rouge_l(predictions, references),
        "topic_accuracy": metrics.accuracy([t for t, _ in parsed], [t for t, _ in wanted]),
        "headline_rougeL": metrics.rouge_l([h for _, h in parsed], [h for _, h in wanted]),
        "in_format": (
            sum(in_format(p, labels) for p in predictions) / len(predictions)
            if predictions
            else 0.0
        ),
    }


def read_jsonl(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")  # unchanged files keep their cache keys


@dataclass
class Inputs:
    """The composed task's data: joined train/test rows, calibration and scored rows."""

    joined: dict[str, list[dict[str, str]]]
    calibration_rows: list[dict[str, str]]
    calibration_path: Path
    texts: list[str]
    references: list[str]
    labels: list[str]


def prepare_inputs(data_dir: Path, folder: Path, settings: Settings) -> Inputs:
    """Join the two tasks' splits on the article; write them and the calibration set."""
    joined = {
        split: join_examples(
            read_jsonl(split_path(data_dir, TOPIC, split)),
            read_jsonl(split_path(data_dir, HEADLINE, split)),
        )
        for split in ("train", "test")
    }
    calibration_rows = joined["train"][: settings.calibration_examples]
    test_rows = joined["test"][: settings.test_examples]
    write_jsonl(folder / "data" / "train.jsonl", joined["train"])
    write_jsonl(folder / "data" / "test.jsonl", joined["test"])
    calibration_path = folder / "data" / f"calibration-{len(calibration_rows)}.jsonl"
    write_jsonl(calibration_path, calibration_rows)
    definitions = {t["name"]: t for t in task_definitions()}
    return Inputs(
        joined=joined,
        calibration_rows=calibration_rows,
        calibration_path=calibration_path,
        texts=[r["input"] for r in test_rows],
        references=[r["output"] for r in test_rows],
        labels=list(definitions[TOPIC]["labels"]),
    )


def task_config(name: str, data_dir: Path, scale):
    """The task as the quality benchmark scores it (prompt, labels, metric)."""
    from mtd_contract.config import TaskConfig
    from mtd_operator.api.spec import TaskSpec

    definitions = {t["name"]: t for t in task_definitions()}
    spec = TaskSpec.model_validate({**definitions[name], "data": {"train": "x"}})
    row = eval_config(name, [spec], None, Path("unused"), data_dir, BASE_MODEL, scale)
    return TaskConfig.model_validate(row["tasks"][0])
