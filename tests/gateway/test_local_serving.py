"""`mtd run` / `mtd serve` serve through the gateway in front of our server (one path)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from mtd_operator.cli import _start_serving
from mtd_operator.client import MultiTaskClient
from mtd_operator.core.catalogue import Catalogue
from tests.support.net import free_port

from .conftest import LABELS, catalogue_doc, write_catalogue


def test_local_serving_goes_through_the_gateway(served, tmp_path: Path) -> None:
    """The manifest `mtd run` writes (serving.json + catalogue.json) → engine + gateway."""
    root = tmp_path / "support"
    root.mkdir()
    doc = catalogue_doc()
    manifest = {
        "revision": "r1",
        "baseModel": str(served.base),
        "adapters": {name: str(path) for name, path in served.adapters.items()},
        "catalogue": doc,
    }
    (root / "serving.json").write_text(json.dumps(manifest), encoding="utf-8")
    (root / "catalogue.json").write_text(Catalogue.model_validate(doc).to_json())
    port, engine_port = free_port(), free_port()
    process, url, engine_url = _start_serving(root / "serving.json", "127.0.0.1", port, engine_port)
    try:
        assert engine_url == f"http://127.0.0.1:{engine_port}"
        with MultiTaskClient(url) as client:
            assert client.via_gateway
            prediction = client.predict("sentiment", "the day was awful")
        assert prediction.output in LABELS and prediction.adapter == "sentiment"
        # The engine behind it is our server (label scoring), answering the same.
        with MultiTaskClient(engine_url) as direct:
            assert direct.predict("sentiment", "the day was awful") == prediction
        # A rerun rewrites catalogue.json: the running gateway follows it.
        extra = {"name": "mood", "instruction": "Mood?", "labels": ["up", "down"]}
        write_catalogue(root / "catalogue.json", catalogue_doc({**extra, "adapter": "sounds"}))
        answer = httpx.post(f"{url}/tasks/mood", json={"text": "x"}, timeout=60).json()
        assert answer["output"] in ("up", "down")
    finally:
        process.terminate()
        process.wait(timeout=30)
