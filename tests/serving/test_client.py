"""MultiTaskClient against the local server: catalogue, routing, labels, errors, no torch."""

from __future__ import annotations

import httpx
import pytest

from mtd_contract.prompts import messages
from mtd_operator.client import (
    ClientError,
    MultiTaskClient,
    ServerError,
    UnknownTaskError,
    label_regex,
)
from tests.support.processes import heavy_imports

from .conftest import LABELS, Served


def test_classification_uses_label_scoring(served: Served) -> None:
    with MultiTaskClient(served.url) as client:
        assert client.upstream is not None and client.upstream.engine == "ours"
        assert sorted(client.tasks) == ["sentiment", "sounds"]
        prediction = client.predict("sentiment", "the day was awful")
    chat = messages("Classify the sentiment.", "the day was awful", LABELS)
    direct = httpx.post(
        served.url + "/classify",
        json={"messages": chat, "labels": LABELS, "adapter_id": "sentiment"},
    ).json()
    assert prediction.output == direct["label"] and prediction.adapter == "sentiment"
    assert prediction.score == pytest.approx(direct["probability"])
    assert prediction.to_json()["task"] == "sentiment"


def test_classification_against_plain_tgi_uses_the_regex_grammar(served: Served) -> None:
    """What the client does with a real TGI: constrained greedy decoding, scored."""
    with MultiTaskClient(served.url, served.catalogue, engine="tgi") as client:
        for text in ("the day was awful", "the film was good", "x"):
            prediction = client.predict("sentiment", text)
            assert prediction.output in LABELS
            assert prediction.score is not None and 0 < prediction.score <= 1


def test_generation_routes_to_the_task_adapter(served: Served) -> None:
    from huggingface_hub import InferenceClient

    with MultiTaskClient(served.url, max_new_tokens=8) as client:
        prediction = client.predict("sounds", "the cat says")
    chat = messages("What sound does it make?", "the cat says")
    expected = InferenceClient(base_url=served.url).chat_completion(
        chat, model="sounds", max_tokens=8, temperature=0
    )
    assert prediction.output == expected.choices[0].message.content
    assert prediction.adapter == "sounds" and prediction.score is not None
    assert prediction.score <= 0


def test_given_catalogue_and_errors(served: Served) -> None:
    catalogue = {
        "tasks": [
            {"name": "echo", "instruction": "Repeat.", "adapter": None},
            {"name": "typo", "instruction": "Repeat.", "adapter": "sentimnet"},
            {
                "name": "labels",
                "instruction": "Pick.",
                "labels": ["a b", "c.d"],
                "adapter": "sounds",
            },
        ]
    }
    with MultiTaskClient(served.url, catalogue) as client:
        assert client.predict("echo", "hello").adapter is None
        assert client.predict("labels", "x").output in {"a b", "c.d"}
        with pytest.raises(UnknownTaskError, match="echo, labels, typo"):
            client.predict("sentiment", "x")
        with pytest.raises(ServerError, match="sentimnet") as error:
            client.predict("typo", "x")
        assert error.value.status == 422
    with pytest.raises(ClientError, match="instruction"):
        MultiTaskClient(served.url, {"tasks": [{"name": "broken"}]})


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(ServerError, match="cannot reach"):
        MultiTaskClient("http://127.0.0.1:9", timeout=2)


def test_label_regex_escapes_only_regex_syntax() -> None:
    assert label_regex(["a b", "c.d", "正面"]) == "a b|c\\.d|正面"


def test_client_needs_no_torch() -> None:
    assert heavy_imports("mtd_operator.client") == []
