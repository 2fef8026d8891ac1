"""A finished step's files are checked by content before reuse and serving; a damaged one is
rebuilt (issues #15, #29)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from mtd_contract.digests import folder_digest, folder_files
from mtd_operator.local.serve import ServingError, check_adapters, read_manifest
from tests.support.safetensors_files import write_safetensors


def test_mtd_serve_refuses_an_adapter_that_is_not_what_its_step_recorded(tmp_path: Path) -> None:
    folder = tmp_path / "a"
    weights = write_safetensors(folder / "adapter_model.safetensors", {"w": ("F32", [1.0, 2.0])})
    manifest = {
        "adapters": {"task-1": str(folder)},
        "digests": {"task-1": folder_digest(folder_files(folder))},
    }
    check_adapters(manifest)
    weights.write_bytes(weights.read_bytes()[:-1])
    with pytest.raises(
        ServingError, match=r"adapter task-1 refused: .*mismatch.*`mtd run` rebuilds it"
    ):
        check_adapters(manifest)


def test_mtd_serve_refuses_a_fine_tuned_model_with_nan_weights(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write_safetensors(folder / "model.safetensors", {"w": ("BF16", [1.0, float("nan")])})
    manifest = {"adapters": {}, "baseModel": str(folder), "modelId": "group", "digests": {}}
    with pytest.raises(ServingError, match="non-finite"):
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
        manifest = read_manifest(tmp_path / "ws" / "tiny" / "serving.json")
        (adapter,) = manifest["adapters"].values()  # under the name the engine serves it by
        weights = Path(adapter) / "adapter_model.safetensors"
        whole = weights.stat().st_size
        weights.write_bytes(weights.read_bytes()[: whole // 2])

        output, decision = run()
        assert not decision.failed, output
        assert "cannot be reused, rebuilding" in output and "content differs" in output
        assert "▶" in output  # the step ran again
        assert weights.stat().st_size == whole
        assert list((tmp_path / "ws" / "tiny").rglob("*.damaged-*"))  # the damaged one is kept

        output, _ = run()
        assert "▶" not in output and "damaged" not in output  # whole again: reused


def test_serving_json_paths_follow_a_moved_workspace(tmp_path: Path) -> None:
    """serving.json names the workspace's folders relative to itself (issue #30), so a
    copied workspace serves its own adapters, not the original's."""
    import shutil

    from mtd_operator.local.serve import read_manifest

    first = tmp_path / "first" / "tiny"
    adapter = first / "train" / "g-stage2" / "adapter"
    write_safetensors(adapter / "adapter_model.safetensors", {"w": ("F32", [1.0])})
    digest = folder_digest(folder_files(adapter))
    manifest = {
        "engine": "vllm", "baseModel": "org/base",
        "adapters": {"g-1": "train/g-stage2/adapter"}, "digests": {"g-1": digest},
    }  # fmt: skip
    (first / "serving.json").write_text(json.dumps(manifest))
    shutil.copytree(tmp_path / "first", tmp_path / "copy")
    copied = read_manifest(tmp_path / "copy" / "tiny" / "serving.json")
    assert copied["adapters"] == {"g-1": str(tmp_path / "copy" / "tiny" / "train/g-stage2/adapter")}
    assert copied["baseModel"] == "org/base"  # not a workspace folder: as written
    check_adapters(copied)
