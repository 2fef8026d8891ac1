"""The trainer records what a step produced, refuses non-finite weights, and reuses a
result only while it and its files are as written (issue #29)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from mtd_contract.digests import seal_problem
from mtd_contract.results import parse_result
from mtd_trainer.errors import InputError
from mtd_trainer.verified import reusable, scored_digests, write_result
from tests.support.safetensors_files import write_safetensors


def step(tmp_path: Path, values: list[float]) -> tuple[Path, Path]:
    artifact = tmp_path / "out" / "adapter"
    write_safetensors(artifact / "adapter_model.safetensors", {"w": ("F32", values)})
    (artifact / "adapter_config.json").write_text('{"r": 2}')
    return tmp_path / "out" / "result.json", artifact


def test_a_result_records_every_file_and_is_reused_while_they_match(tmp_path):
    path, artifact = step(tmp_path, [1.0, 2.0])
    base = {"run_name": "r", "method": "lora", "steps": 1, "artifact": str(artifact)}
    result = write_result(path, base, [artifact])
    assert sorted(result["files"]) == [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
    ]
    assert seal_problem(json.loads(path.read_text())) is None
    assert parse_result("train", result).files == result["files"]
    assert reusable(path) == result


@pytest.mark.parametrize(
    "damage",
    [
        lambda path, artifact: (artifact / "adapter_config.json").write_text("{"),
        lambda path, artifact: (artifact / "adapter_model.safetensors").unlink(),
        lambda path, artifact: path.write_text(
            path.read_text().replace('"steps": 1', '"steps": 9')
        ),
        lambda path, artifact: path.write_text(path.read_text()[:-5]),
    ],
    ids=["artifact malformed", "artifact deleted", "result edited", "result truncated"],
)
def test_a_damaged_step_is_moved_aside_and_run_again(tmp_path, damage):
    path, artifact = step(tmp_path, [1.0, 2.0])
    write_result(path, {"run_name": "r", "steps": 1}, [artifact])
    damage(path, artifact)
    assert reusable(path) is None
    assert not path.exists() and len(list(path.parent.glob("result.json.damaged-*"))) == 1


def test_non_finite_weights_are_never_published(tmp_path):
    path, artifact = step(tmp_path, [1.0, math.nan])
    with pytest.raises(InputError, match=r"tensor 'w' has 1 non-finite .*training.learningRate"):
        write_result(path, {"run_name": "r"}, [artifact])
    assert not path.exists()


def test_an_evaluation_records_what_it_scored_relative_to_itself(tmp_path):
    _, artifact = step(tmp_path, [1.0])
    scored = scored_digests(tmp_path / "evals" / "e.json", [str(artifact), None, str(artifact)])
    assert list(scored) == ["../out/adapter"]
