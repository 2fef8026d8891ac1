"""The gateway in front of our TGI-compatible server (a tiny Llama, two LoRA adapters).

Both ways the gateway can talk to it: as our server (`/classify` label scoring) and as a
plain TGI (`response_format` regex grammar, base model `tgi`), so the TGI path is tested
against a real TGI-compatible engine.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from mtd_contract.prompts import messages
from mtd_operator.gateway.app import build_gateway

from .conftest import LABELS, catalogue_doc, write_catalogue


def test_label_scoring_route_on_our_server(served, catalogue_file: Path) -> None:
    gw = build_gateway(str(catalogue_file), served.url)  # detected: ours
    with TestClient(gw.app) as client:
        answer = client.post("/tasks/sentiment", json={"text": "the day was awful"}).json()
    assert gw.upstream.engine == "ours"
    direct = httpx.post(
        served.url + "/classify",
        json={
            "messages": messages("Classify the sentiment.", "the day was awful", LABELS),
            "labels": LABELS,
            "adapter_id": "sentiment",
        },
    ).json()
    assert answer["output"] == direct["label"] and answer["adapter"] == "sentiment"
    assert answer["score"] == pytest.approx(direct["probability"])


def test_tgi_route_routes_by_task_and_answers_labels_only(served, catalogue_file: Path) -> None:
    gw = build_gateway(str(catalogue_file), served.url, engine="tgi")
    with TestClient(gw.app) as client:
        for text in ("the day was awful", "the film was good", "x"):
            answer = client.post("/tasks/sentiment", json={"text": text}).json()
            assert answer["output"] in LABELS and 0 < answer["score"] <= 1
        sounds = client.post("/tasks/sounds", json={"text": "the cat says", "max_new_tokens": 8})
        echo = client.post("/tasks/echo", json={"text": "the cat says", "max_new_tokens": 8})
        unknown = client.post("/tasks/nope", json={"text": "x"})
    for adapter, answer in (("sounds", sounds.json()), ("tgi", echo.json())):
        chat = messages(
            "What sound does it make?" if adapter == "sounds" else "Repeat the text.",
            "the cat says",
        )
        direct = httpx.post(
            served.url + "/v1/chat/completions",
            json={"model": adapter, "messages": chat, "max_tokens": 8, "temperature": 0},
        ).json()
        assert answer["output"] == direct["choices"][0]["message"]["content"]
    assert unknown.status_code == 404 and "echo, sentiment, sounds" in unknown.json()["error"]


def test_catalogue_change_on_our_server(served, catalogue_file: Path) -> None:
    gw = build_gateway(str(catalogue_file), served.url)
    with TestClient(gw.app) as client:
        assert client.post("/tasks/mood", json={"text": "x"}).status_code == 404
        mood = {
            "name": "mood",
            "type": "classification",
            "instruction": "Mood?",
            "labels": ["happy", "sad"],
            "adapter": "sounds",
        }
        write_catalogue(catalogue_file, catalogue_doc(mood))
        answer = client.post("/tasks/mood", json={"text": "the day was awful"}).json()
    assert answer["output"] in ("happy", "sad") and answer["adapter"] == "sounds"
