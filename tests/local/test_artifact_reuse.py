"""A finished step's files are checked before reuse; a damaged one is rebuilt (issue #15)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from mtd_operator.local.artifacts import damaged_artifact, safetensors_problem
from mtd_operator.local.serve import ServingError, check_adapters


def write_safetensors(path: Path, tensors: dict[str, bytes]) -> Path:
    """A safetensors file built by the format's rules (no torch): header length, header
    with each tensor's byte range, the bytes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, data in tensors.items():
        header[name] = {
            "dtype": "F32",
            "shape": [len(data) // 4],
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(tensors.values()))
    return path


def test_a_whole_file_passes(tmp_path: Path) -> None:
    path = write_safetensors(tmp_path / "a.safetensors", {"w": b"\0" * 64, "b": b"\1" * 16})
    assert safetensors_problem(path) is None


def test_the_library_agrees_with_the_check(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    from safetensors.numpy import save_file

    path = tmp_path / "lib.safetensors"
    save_file({"w": numpy.ones((3, 5), dtype="float32")}, str(path))
    assert safetensors_problem(path) is None
    path.write_bytes(path.read_bytes()[:-4])
    assert "truncated" in (safetensors_problem(path) or "")


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda b: b[:-10], "truncated or padded"),
        (lambda b: b + b"\0", "truncated or padded"),
        (lambda b: b[:5], "shorter than a safetensors header"),
        (lambda b: b[:40], "does not fit"),
        (lambda b: b[:8] + b"{" * (len(b) - 8), "not valid JSON"),
        (lambda b: (10**12).to_bytes(8, "little") + b[8:], "does not fit"),
    ],
    ids=["truncated", "padded", "tiny", "cut-in-header", "garbage-header", "huge-length"],
)
def test_damage_is_found(tmp_path: Path, damage, expected: str) -> None:
    path = write_safetensors(tmp_path / "a.safetensors", {"w": b"\0" * 64})
    path.write_bytes(damage(path.read_bytes()))
    assert expected in (safetensors_problem(path) or "")


def test_a_damaged_adapter_is_found_below_a_step_output(tmp_path: Path) -> None:
    write_safetensors(tmp_path / "step" / "adapter" / "adapter_model.safetensors", {"w": b"1234"})
    write_safetensors(tmp_path / "step" / ".cache" / "x.safetensors", {"w": b"1234"})
    assert damaged_artifact(tmp_path / "step") is None
    weights = tmp_path / "step" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-2])
    assert str(weights) in (damaged_artifact(tmp_path / "step") or "")


def test_mtd_serve_refuses_a_damaged_adapter_before_loading(tmp_path: Path) -> None:
    weights = write_safetensors(tmp_path / "a" / "adapter_model.safetensors", {"w": b"1234"})
    weights.write_bytes(weights.read_bytes()[:-1])
    manifest = tmp_path / "serving.json"
    manifest.write_text(json.dumps({"adapters": {"task": str(tmp_path / "a")}}))
    with pytest.raises(ServingError, match=r"adapter task is damaged: .*; `mtd run` rebuilds it"):
        check_adapters(manifest)


@pytest.mark.slow
def test_a_truncated_adapter_is_rebuilt(tmp_path: Path) -> None:
    from mtd_operator.local.engine import LocalEngine
    from mtd_operator.local.runner import LocalRun
    from tests.support.tiny_tasks import task, write_task_data

    from .conftest import MAX_MODEL_LENGTH, build_tiny

    model = build_tiny(tmp_path / "model")
    write_task_data(tmp_path)
    sounds = task("sounds", "generation", metric="exactMatch")
    doc = {
        "apiVersion": "multitask.dev/v1alpha1",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": "tiny"},
        "spec": {
            "baseModel": {"uri": str(model)},
            "tasks": [{**sounds, "data": {"train": sounds["data"]["train"]}}],
            "training": {"stage2": {"maxSteps": 2}, "batchSize": 2, "maxSeqLength": 32},
            "serving": {"maxModelLength": MAX_MODEL_LENGTH},
        },
    }
    spec = tmp_path / "mtd.yaml"
    spec.write_text(yaml.safe_dump(doc), encoding="utf-8")

    # One engine for the three runs, should they evaluate (no eval data here: it never
    # starts); stopped at the end, whatever happens.
    with LocalEngine(tmp_path / "engine") as engine:

        def run() -> tuple[str, object]:
            out = io.StringIO()
            with LocalRun(spec, tmp_path / "ws", out=out, engine=engine) as local:
                decision = local.run_pipeline()
            return out.getvalue(), decision

        output, decision = run()
        assert not decision.failed, output
        manifest = json.loads((tmp_path / "ws" / "tiny" / "serving.json").read_text())
        (adapter,) = manifest["adapters"].values()  # under the name the engine serves it by
        weights = Path(adapter) / "adapter_model.safetensors"
        whole = weights.stat().st_size
        weights.write_bytes(weights.read_bytes()[: whole // 2])

        output, decision = run()
        assert not decision.failed, output
        assert "damaged artifact, rebuilding" in output and "truncated" in output
        assert "▶" in output  # the step ran again
        assert safetensors_problem(weights) is None and weights.stat().st_size == whole
        assert list((tmp_path / "ws" / "tiny").rglob("*.damaged-*"))  # the damaged one is kept

        output, _ = run()
        assert "▶" not in output and "damaged" not in output  # whole again: reused
