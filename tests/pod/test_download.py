"""The profiling Job's download of a hub base model: idempotent, token from the Secret,
and failures that name the spec field to fix. The hub itself is never reached: its
client's download function is replaced by one that writes (or refuses) locally."""

from __future__ import annotations

from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.errors import GatedRepoError
from huggingface_hub.utils import filter_repo_objects

from mtd_operator.pod.download import ALLOW_PATTERNS, DownloadError, download_model

# A hub repo holding the model in every format, as many do (paths as the hub lists them).
REPO_FILES = [
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "tokenizer.model.v3",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "qwen.tiktoken",
    "pytorch_model-00001-of-00002.bin",
    "pytorch_model.bin.index.json",
    "model.gguf",
    "onnx/model.onnx",
    "tf_model.h5",
    "flax_model.msgpack",
    "modeling_custom.py",
    "README.md",
    ".gitattributes",
]


def fake_hub(calls: list, files: tuple[str, ...] = ("config.json", "model.safetensors")):
    """A `snapshot_download` that records its call and writes `files` (the patterns it is
    given are checked by the caller, not applied)."""

    def fake(repo_id, local_dir, token, allow_patterns):
        calls.append((repo_id, local_dir, token, allow_patterns))
        Path(local_dir).mkdir(parents=True, exist_ok=True)
        for name in files:
            (Path(local_dir) / name).write_text("{}")
        return local_dir

    return fake


def test_downloads_into_the_workspace_with_the_secret_token(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_hub(calls))
    monkeypatch.setenv("HF_TOKEN", "secret-value")
    target = tmp_path / "models" / "hf" / "org" / "m"
    assert download_model("hf://org/m", target) == target
    assert calls == [("org/m", str(target), "secret-value", list(ALLOW_PATTERNS))]


def test_only_the_files_transformers_and_the_engines_load_are_fetched():
    """The patterns, applied as huggingface_hub applies them, keep weights, configs and every
    tokenizer format, and leave out the other weight formats and remote code."""
    kept = set(filter_repo_objects(REPO_FILES, allow_patterns=list(ALLOW_PATTERNS)))
    assert kept == {
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "tokenizer.model",
        "tokenizer.model.v3",
        "vocab.json",
        "merges.txt",
        "chat_template.jinja",
        "qwen.tiktoken",
        "pytorch_model.bin.index.json",  # small, and ignored without its .bin shards
    }


def test_a_repository_without_safetensors_weights_is_refused(tmp_path, monkeypatch):
    """A .bin-only repo downloads no weights now: it fails here, naming why, not later in
    the trainer or the server."""
    fake = fake_hub([], files=("config.json", "tokenizer.json"))
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    with pytest.raises(
        DownloadError, match=r"spec\.baseModel\.uri: hf://org/old has no safetensors"
    ):
        download_model("hf://org/old", tmp_path / "old")


def test_a_gated_model_without_access_names_the_token_secret(tmp_path, monkeypatch):
    def gated(repo_id, local_dir, token, allow_patterns=None):
        error = GatedRepoError.__new__(GatedRepoError)  # as raised on a 401, minus the HTTP
        Exception.__init__(error, "401: access to this model is restricted")
        raise error

    monkeypatch.setattr(huggingface_hub, "snapshot_download", gated)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(DownloadError, match=r"spec\.baseModel\.tokenSecret: org/m is gated"):
        download_model("hf://org/m", tmp_path / "m")


def test_a_repository_without_a_model_config_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(
        huggingface_hub,
        "snapshot_download",
        lambda repo_id, local_dir, token, allow_patterns=None: local_dir,
    )
    with pytest.raises(DownloadError, match=r"has no config\.json"):
        download_model("hf://org/data", tmp_path / "d")


def _hub_error(kind: str) -> Exception:
    """What huggingface_hub raises for each way a download fails (its own classes, built
    as its HTTP layer builds them)."""
    import httpx2  # huggingface_hub 2's HTTP client
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    request = httpx2.Request("GET", "https://huggingface.co/api/models/org/m")
    if kind == "gated":
        error = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(error, "401: access to this model is restricted")
        return error
    if kind == "not found":
        return RepositoryNotFoundError(
            "404 Repository Not Found", response=httpx2.Response(404, request=request)
        )
    if kind == "bad token":
        return HfHubHTTPError("401 Unauthorized", response=httpx2.Response(401, request=request))
    if kind == "network":
        return httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")
    return LocalEntryNotFoundError("cannot reach the hub and nothing is cached")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("gated", "spec.baseModel.tokenSecret: org/m is gated"),
        ("not found", "spec.baseModel.uri: hf://org/m does not exist on the hub"),
        ("bad token", "spec.baseModel.tokenSecret: the hub refused the token for org/m"),
        ("network", "spec.baseModel.uri: hf://org/m: the hub could not be reached (ConnectError"),
        ("offline", "spec.baseModel.uri: hf://org/m: the hub could not be reached"),
    ],
)
def test_mtd_profile_reports_a_failed_download_in_its_termination_message(
    tmp_path, monkeypatch, capsys, kind, expected
):
    """`mtd profile --download-model` as the profiling Job runs it: a download that fails
    for any reason exits 2 (not retried) with the reason where the operator reads it."""
    from mtd_operator.cli import main

    def failing(repo_id, local_dir, token, allow_patterns=None):
        raise _hub_error(kind)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", failing)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(log))
    code = main([
        "profile", "--spec", str(tmp_path / "spec.yaml"), "--data-dir", str(tmp_path),
        "--result-configmap", "r", "--download-model", "hf://org/m",
        "--model-dir", str(tmp_path / "models" / "m"),
    ])  # fmt: skip
    assert code == 2
    assert expected in log.read_text()
    assert expected in capsys.readouterr().err
