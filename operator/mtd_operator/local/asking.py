"""Asking served tasks from this machine: `mtd predict`, and the one query per task and
composition that `mtd run` ends with, so a run ends with proof that it serves."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Protocol

from mtd_contract.exits import EXIT_FAILED
from mtd_contract.records import Record, iter_records

from ..api.spec import MultiTaskDeploymentSpec
from ..client import ClientError, MultiTaskClient, Prediction
from ..data_files import resolve_data_path


class Asker(Protocol):
    """What asking needs of a client (MultiTaskClient; a stand-in in tests)."""

    def predict(self, task: str, text: str) -> Prediction: ...


def predict(url: str, task: str, text: str, output: str) -> int:
    """`mtd predict`: one answer, as `text` (answer, score, adapter) or `json`."""
    try:
        with MultiTaskClient(url) as client:
            prediction = client.predict(task, text)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if output == "json":
        print(json.dumps(prediction.to_json()))
    else:
        score = "-" if prediction.score is None else f"{prediction.score:.3f}"
        print(f"{prediction.output}\t(score {score}, adapter {prediction.adapter})")
    return 0


def ask_every_task(url: str, spec: MultiTaskDeploymentSpec, spec_dir: Path) -> None:
    """One real query per task (its first eval example) and composition, through the
    gateway at `url`; data paths resolve in `spec_dir`, as profiling resolved them."""
    print("\nOne query per task and composition:")
    with MultiTaskClient(url) as client:
        for task in spec.tasks:
            _ask_one(client, task.name, task.data.eval or task.data.train, spec_dir)
        for composition in spec.compositions:
            source = composition.data.eval or (
                composition.calibration.data if composition.calibration else None
            )
            if source is None:
                print(f"  {composition.name}: no compositional example to ask (no data)")
                continue
            _ask_one(client, composition.name, source, spec_dir)


def _ask_one(client: Asker, name: str, data: str, spec_dir: Path) -> None:
    try:
        ask(client, name, data, spec_dir)
    except ClientError as exc:
        print(f"  {name}: error: {exc}")


def ask(client: Asker, name: str, data: str, spec_dir: Path) -> None:
    """Ask `name` the first record of `data` as the trainer reads it (a byte order mark,
    blank lines allowed) and print the answer beside the expected one."""
    source = resolve_data_path(data, spec_dir)
    example = next((r for _, r in iter_records(source, None) if isinstance(r, Record)), None)
    if example is None:
        print(f"  {name}: no example to ask in {data}")
        return
    prediction = client.predict(name, example.input)
    text = example.input.replace("\n", " ")
    answer = prediction.output.replace("\n", " ")
    print(f"  {name} [{prediction.adapter}]: {text[:70]!r}")
    print(f"    → {answer[:100]!r} (expected {example.output[:60]!r})")
