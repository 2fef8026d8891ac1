"""What a step produced is recorded by content, and anything else is refused (issue #29)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from mtd_contract.digests import (
    adapter_problem,
    files_problem,
    folder_digest,
    folder_files,
    nonfinite_problem,
    seal_problem,
    sealed,
)
from tests.support.safetensors_files import write_safetensors


def adapter(folder: Path, values: list[float] | None = None) -> Path:
    write_safetensors(folder / "adapter_model.safetensors", {"w": ("F32", values or [0.5, -1.0])})
    (folder / "adapter_config.json").write_text('{"r": 2}')
    return folder


def test_a_folder_digest_changes_with_any_file_added_removed_renamed_or_changed(tmp_path):
    folder = adapter(tmp_path / "a")
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("rebuilt on demand")  # caches are not artifacts
    files = folder_files(folder)
    assert sorted(files) == ["adapter_config.json", "adapter_model.safetensors"]
    before = folder_digest(files)
    (folder / "extra.txt").write_text("")
    assert folder_digest(folder_files(folder)) != before
    (folder / "extra.txt").unlink()
    assert folder_digest(folder_files(folder)) == before
    (folder / "adapter_config.json").rename(folder / "config.json")
    assert folder_digest(folder_files(folder)) != before


def test_a_symlink_in_an_artifact_is_refused(tmp_path):
    folder = adapter(tmp_path / "a")
    (folder / "link").symlink_to("/etc/hostname")
    with pytest.raises(ValueError, match="symbolic link"):
        folder_files(folder)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.unlink(), "missing"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1]), "content differs"),
        (lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1]) + p.read_bytes()[1:]), "differs"),
    ],
    ids=["deleted", "truncated", "bit flipped"],
)
def test_recorded_files_are_checked_by_content(tmp_path, damage, expected):
    folder = adapter(tmp_path / "a")
    files = folder_files(folder, prefix="a/")
    assert files_problem(tmp_path, files) is None
    damage(folder / "adapter_model.safetensors")
    assert expected in (files_problem(tmp_path, files) or "")


def test_a_recorded_path_outside_the_step_folder_is_refused(tmp_path):
    assert "outside" in (files_problem(tmp_path, {"../etc/passwd": "0" * 64}) or "")


def test_a_result_knows_when_it_was_edited():
    result = sealed({"run_name": "r", "tasks": {"a": {"score": 0.5}}})
    assert seal_problem(result) is None
    assert "differs" in (seal_problem({**result, "tasks": {"a": {"score": 0.9}}}) or "")
    unsealed = {k: v for k, v in result.items() if k != "digest"}
    assert "records no 'digest'" in (seal_problem(unsealed) or "")


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16", "F64"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_weights_are_found_in_every_float_type(tmp_path, dtype, bad):
    path = write_safetensors(
        tmp_path / "w.safetensors", {"ok": (dtype, [1.0]), "w": (dtype, [0.0, bad])}
    )
    assert "tensor 'w' has 1 non-finite" in (nonfinite_problem(path) or "")
    write_safetensors(path, {"w": (dtype, [0.0, -2.5, 65504.0 if dtype == "F16" else 1e30])})
    assert nonfinite_problem(path) is None


def test_the_finite_check_agrees_with_torch(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tensors = {
        "a": torch.tensor([1.0, float("nan")], dtype=torch.bfloat16),
        "b": torch.tensor([1.0, 2.0], dtype=torch.float16),
    }
    save_file(tensors, tmp_path / "w.safetensors")
    assert "'a' has 1 non-finite" in (nonfinite_problem(tmp_path / "w.safetensors") or "")
    save_file({"b": tensors["b"]}, tmp_path / "w.safetensors")
    assert nonfinite_problem(tmp_path / "w.safetensors") is None


def test_an_adapter_is_served_only_as_recorded_and_finite(tmp_path):
    folder = adapter(tmp_path / "a")
    digest = folder_digest(folder_files(folder))
    assert adapter_problem(folder, digest) is None
    assert adapter_problem(folder, None) is None  # a step that recorded no digests
    assert "mismatch" in (adapter_problem(folder, "0" * 64) or "")
    assert "missing" in (adapter_problem(tmp_path / "gone", digest) or "")
    nan = adapter(tmp_path / "nan", [0.0, math.nan])
    # Weights a trainer wrote as NaN match their own digest, and are refused all the same.
    assert "non-finite" in (adapter_problem(nan, folder_digest(folder_files(nan))) or "")
