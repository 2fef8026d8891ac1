"""`mtd run` / `mtd serve` serve through the task gateway in front of the real vLLM (one
path): serving.json and catalogue.json as `mtd run` writes them → `start_serving`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mtd_contract.catalogue import Catalogue
from mtd_contract.upstream import Question, Upstream
from mtd_operator.client import MultiTaskClient
from mtd_operator.engines.base import adapter_name
from mtd_operator.local.engine import LocalEngine
from mtd_operator.local.serve import ServingError, read_manifest, start_serving
from tests.support.net import free_port

from .conftest import LABELS, TINY_MAX_MODEL_LEN, RealVllm, catalogue_doc, write_catalogue


def engine_catalogue(names: dict[str, str], *extra: dict[str, Any]) -> dict[str, Any]:
    """The catalogue with adapters under the engine's names, as `LocalRun.catalogue`."""
    return json.loads(Catalogue.model_validate(catalogue_doc(*extra)).renamed(names).to_json())


def test_local_serving_goes_through_the_gateway_to_vllm(
    real_vllm: RealVllm, tmp_path: Path
) -> None:
    """The manifest `mtd run` writes (serving.json + catalogue.json) → vLLM + gateway."""
    engine = real_vllm.engine
    root = tmp_path / "support"
    root.mkdir()
    # vLLM's names for the adapters: the task's name plus a hash of the folder.
    names = {name: adapter_name(str(path), name) for name, path in real_vllm.adapters.items()}
    manifest = {
        "revision": "r1",
        "engine": "vllm",
        "baseModel": str(real_vllm.base),
        "maxModelLength": TINY_MAX_MODEL_LEN,
        "loraRank": 4,
        "adapters": {names[name]: str(path) for name, path in real_vllm.adapters.items()},
        "catalogue": engine_catalogue(names),
    }
    (root / "serving.json").write_text(json.dumps(manifest), encoding="utf-8")
    write_catalogue(root / "catalogue.json", engine_catalogue(names))
    running = engine.process
    port = free_port()
    server, url = start_serving(root / "serving.json", engine, "127.0.0.1", port)
    try:
        assert url == f"http://127.0.0.1:{port}"
        assert engine.process is running  # the engine already serving the model: no restart
        assert set(names.values()) <= engine.loaded
        with MultiTaskClient(url) as client:
            assert client.via_gateway
            prediction = client.predict("sentiment", "the day was awful")
            sounds = client.predict("sounds", "the cat says")
            echo = client.predict("echo", "hello there")
        assert prediction.output in LABELS and prediction.adapter == names["sentiment"]
        assert 0 < prediction.score <= 1
        assert sounds.adapter == names["sounds"] and echo.adapter is None

        # The engine itself holds the key (only the gateway gets through) and answers the
        # same when asked directly, as the gateway asks it.
        assert httpx.get(f"{engine.url}/v1/models", timeout=30).status_code == 401
        direct = Upstream(engine.url, "vllm", api_key=engine.api_key())
        try:
            task = "Classify the sentiment."
            answer = direct.answer(
                Question(names["sentiment"], task, "the day was awful", LABELS, 16)
            )
        finally:
            direct.close()
        assert answer.output == prediction.output
        assert answer.score == pytest.approx(prediction.score, rel=1e-3)

        # A rerun rewrites catalogue.json: the running gateway follows it.
        extra = {"name": "mood", "instruction": "Mood?", "labels": ["up", "down"]}
        write_catalogue(
            root / "catalogue.json", engine_catalogue(names, {**extra, "adapter": "sounds"})
        )
        answer = httpx.post(f"{url}/tasks/mood", json={"text": "x"}, timeout=120).json()
        assert answer["output"] in ("up", "down") and answer["adapter"] == names["sounds"]
    finally:
        server.should_exit = True


def test_a_manifest_for_the_earlier_local_server_is_refused(tmp_path: Path) -> None:
    """serving.json written before vLLM served locally (no `"engine": "vllm"`): refused
    with what to do, before any engine is started."""
    manifest = tmp_path / "serving.json"
    manifest.write_text(
        json.dumps({"revision": "r1", "baseModel": "/m", "adapters": {}, "catalogue": {}}),
        encoding="utf-8",
    )
    with pytest.raises(ServingError, match=r"earlier local server, not vLLM: run `mtd run` again"):
        read_manifest(manifest)
    engine = LocalEngine(tmp_path / "state", venv=str(tmp_path / "no-venv"))
    with pytest.raises(ServingError, match="earlier local server"):
        start_serving(manifest, engine, "127.0.0.1", free_port())
    assert engine.process is None and not (tmp_path / "state").exists()
    manifest.write_text("{not json", encoding="utf-8")
    with pytest.raises(ServingError, match="run `mtd run` again"):
        read_manifest(manifest)
