"""Locally, hf://ORG/NAME is read from the user's hub cache (offline here: a cache laid
out as huggingface_hub writes it, holding a tiny model built on the fly)."""

from __future__ import annotations

import shutil
from pathlib import Path

import huggingface_hub
import pytest

from mtd_trainer.errors import InputError
from mtd_trainer.modeling import local_folder

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    repo = cache / "models--org--tiny"
    shutil.copytree(tiny_model, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_hub_models_come_from_the_users_cache(hub_cache: Path) -> None:
    folder = Path(local_folder("hf://org/tiny"))
    assert folder == hub_cache / "models--org--tiny" / "snapshots" / COMMIT
    with pytest.raises(InputError, match="hf://org/absent: not in the hub cache"):
        local_folder("hf://org/absent")
    assert local_folder("/some/folder") == "/some/folder"
