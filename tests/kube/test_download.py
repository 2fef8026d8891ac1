"""The profiling Job's download of a hub base model: idempotent, token from the Secret,
and failures that name the spec field to fix. The hub itself is never reached: its
client's download function is replaced by one that writes (or refuses) locally."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError

from mtd_operator.kube.download import DownloadError, download_model


def test_downloads_into_the_workspace_with_the_secret_token(tmp_path, monkeypatch):
    calls = []

    def fake(repo_id, local_dir, token):
        calls.append((repo_id, local_dir, token))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        (Path(local_dir) / "config.json").write_text("{}")
        return local_dir

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    monkeypatch.setenv("HF_TOKEN", "secret-value")
    target = tmp_path / "models" / "hf" / "org" / "m"
    assert download_model("hf://org/m", target) == target
    assert calls == [("org/m", str(target), "secret-value")]


def test_a_gated_model_without_access_names_the_token_secret(tmp_path, monkeypatch):
    def gated(repo_id, local_dir, token):
        error = GatedRepoError.__new__(GatedRepoError)  # as raised on a 401, minus the HTTP
        Exception.__init__(error, "401: access to this model is restricted")
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(DownloadError, match=r"spec\.baseModel\.tokenSecret: org/m is gated"):
        download_model("hf://org/m", tmp_path / "m")


def test_a_repository_without_a_model_config_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo_id, local_dir, token: local_dir
    )
    with pytest.raises(DownloadError, match=r"has no config\.json"):
        download_model("hf://org/data", tmp_path / "d")
