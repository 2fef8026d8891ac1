"""`mtd run` on a spec it cannot plan writes the same blocked status the operator does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtd_operator.core.problems import InvalidData, InvalidSpec
from mtd_operator.local.runner import LocalRun
from tests.core.specs import resource, task, write_jsonl


def _spec(folder: Path, *, data: bool, model: bool) -> Path:
    doc = resource([task("a")])
    if data:
        rows = [{"input": f"a {i}", "output": "yes"} for i in range(8)]
        write_jsonl(folder / "data/a/train.jsonl", rows)
        write_jsonl(folder / "data/a/eval.jsonl", rows[:4])
    if model:
        (folder / "models/base").mkdir(parents=True)
        (folder / "models/base/config.json").write_text("{}", encoding="utf-8")
    path = folder / "mtd.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _conditions(workspace: Path) -> dict[str, dict]:
    status = json.loads((workspace / "support" / "status.json").read_text())
    return {c["type"]: c for c in status["conditions"]}


def test_missing_data_is_invalid_data(tmp_path: Path) -> None:
    spec = _spec(tmp_path, data=False, model=True)
    with pytest.raises(InvalidData):
        LocalRun(spec, tmp_path / "ws")
    conditions = _conditions(tmp_path / "ws")
    assert (conditions["Planned"]["status"], conditions["Planned"]["reason"]) == (
        "False",
        "InvalidData",
    )
    assert conditions["Ready"]["reason"] == "InvalidData"
    assert "data/a/train.jsonl" in conditions["Ready"]["message"]


def test_a_missing_base_model_is_invalid_spec(tmp_path: Path) -> None:
    spec = _spec(tmp_path, data=True, model=False)
    with pytest.raises(InvalidSpec) as raised:
        LocalRun(spec, tmp_path / "ws")
    assert not isinstance(raised.value, InvalidData)
    conditions = _conditions(tmp_path / "ws")
    assert conditions["Planned"]["reason"] == "InvalidSpec"
    assert "spec.baseModel.uri" in conditions["Ready"]["message"]


def test_once_fixed_the_run_plans(tmp_path: Path) -> None:
    spec = _spec(tmp_path, data=True, model=True)
    run = LocalRun(spec, tmp_path / "ws")
    assert [s.key for s in run.decide().start]  # planned: steps to start
    assert _conditions(tmp_path / "ws")["Planned"]["status"] == "True"
