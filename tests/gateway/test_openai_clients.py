"""The gateway's OpenAI routes as the official `openai` client meets them (issue #30):
models listed and retrieved, every task answered on both routes, the engine's
`finish_reason` and `usage`, sampling fields passed on, and every field the gateway cannot
honour refused with an error whose message and `param` name it."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from mtd_operator.gateway.app import build_gateway
from tests.support.net import serve_app

from .conftest import BASE_MODEL, LABELS

TASKS = ["echo", "sentiment", "sounds"]


@pytest.fixture
def client(catalogue_file: Path, vllm):
    standin, url = vllm
    gateway = build_gateway(str(catalogue_file), url, engine="vllm", base_model=BASE_MODEL)
    with serve_app(gateway.app) as gateway_url:
        yield openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0), standin


def test_models_are_listed_and_retrieved_with_what_a_client_needs(client):
    api, _ = client
    models = api.models.list().data
    assert sorted(m.id for m in models) == TASKS
    assert all(m.object == "model" and m.created > 0 and m.owned_by for m in models)
    sentiment = api.models.retrieve("sentiment")
    details = sentiment.model_extra["mtd"]
    assert details["type"] == "classification" and details["labels"] == LABELS
    assert details["metric"] == "accuracy" and details["verdict"] == "Qualified"
    assert details["adapter"] == "sentiment"


def test_an_unknown_model_is_not_found_naming_the_known_tasks(client):
    api, _ = client
    with pytest.raises(openai.NotFoundError) as error:
        api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert "unknown task 'gpt-4o'; known tasks: echo, sentiment, sounds" in error.value.message
    assert error.value.code == "model_not_found" and error.value.param == "model"
    assert error.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError, match="known tasks"):
        api.models.retrieve("gpt-4o")


@pytest.mark.parametrize("task", TASKS)
def test_every_task_answers_on_both_routes(client, task):
    api, _ = client
    chat = api.chat.completions.create(
        model=task, messages=[{"role": "user", "content": "the day was awful"}]
    )
    text = api.completions.create(model=task, prompt="the day was awful")
    for answer in (chat.choices[0].message.content, text.choices[0].text):
        assert answer and (answer in LABELS if task == "sentiment" else True)
    assert chat.usage.total_tokens > 0 and chat.choices[0].finish_reason == "stop"
    assert chat.model == text.model == task


def test_the_engine_says_when_max_tokens_cut_the_answer(client):
    api, _ = client
    out = api.chat.completions.create(
        model="sounds", messages=[{"role": "user", "content": "a b c d e f"}], max_tokens=2
    )
    assert out.choices[0].finish_reason == "length"


def test_sampling_fields_reach_the_engine(client):
    api, standin = client
    api.chat.completions.create(
        model="sounds",
        messages=[{"role": "user", "content": "cow"}],
        temperature=1.5, top_p=0.9, seed=7, stop=["\n"], max_completion_tokens=12,
    )  # fmt: skip
    sent = standin.requests[-1]
    assert sent["temperature"] == 1.5 and sent["top_p"] == 0.9 and sent["seed"] == 7
    assert sent["stop"] == ["\n"] and sent["max_tokens"] == 12
    api.chat.completions.create(model="sounds", messages=[{"role": "user", "content": "cow"}])
    assert standin.requests[-1]["temperature"] == 0  # greedy unless asked otherwise


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 17}, "n"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"response_format": "json"}, "response_format"),
        ({"extra_body": {"echo": True}}, "echo"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"temperature": 3}, "temperature"),
        ({"seed": "x"}, "seed"),
    ],
)
def test_what_the_gateway_cannot_honour_is_refused_naming_the_field(client, fields, param):
    api, _ = client
    with pytest.raises(openai.BadRequestError) as error:
        api.chat.completions.create(
            model="sounds", messages=[{"role": "user", "content": "cow"}], **fields
        )
    # The client shows the gateway's message as "Error code: 400 - <message>".
    assert error.value.param == param and error.value.body["message"].startswith(f"{param}: ")
    assert f"- {param}: " in str(error.value)


@pytest.mark.parametrize("task", TASKS)
def test_every_task_streams_on_both_routes_the_same_answer(client, task):
    api, _ = client
    messages = [{"role": "user", "content": "the day was awful"}]
    whole = api.chat.completions.create(model=task, messages=messages).choices[0].message.content
    chunks = list(
        api.chat.completions.create(
            model=task, messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole and chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage.total_tokens > 0 and all(c.model == task for c in chunks)
    text = "".join(
        c.choices[0].text
        for c in api.completions.create(model=task, prompt="the day was awful", stream=True)
    )
    assert text == whole


def test_n_choices_and_log_probabilities_come_from_the_engine(client):
    api, standin = client
    chat = api.chat.completions.create(
        model="sentiment",
        messages=[{"role": "user", "content": "awful"}],
        n=3, logprobs=True, top_logprobs=2,
    )  # fmt: skip
    assert [c.index for c in chat.choices] == [0, 1, 2]
    assert all(c.message.content in LABELS for c in chat.choices)  # each one a label
    assert chat.choices[0].logprobs.content[0].logprob == -0.25
    sent = standin.requests[-1]
    assert sent["n"] == 3 and sent["logprobs"] is True and sent["top_logprobs"] == 2
    plain = api.chat.completions.create(model="sounds", messages=[{"role": "user", "content": "x"}])
    assert plain.choices[0].logprobs is None  # asked for the score only, not passed on
    with pytest.raises(openai.BadRequestError) as error:  # a chat model: logprobs via chat
        api.completions.create(model="sounds", prompt="cow", logprobs=2)
    assert error.value.param == "logprobs" and "/v1/chat/completions" in error.value.message


def test_a_generation_task_takes_a_response_format_a_classification_does_not(client):
    api, standin = client
    api.chat.completions.create(
        model="sounds",
        messages=[{"role": "user", "content": "cow"}],
        response_format={"type": "json_object"},
    )
    assert standin.requests[-1]["response_format"] == {"type": "json_object"}
    with pytest.raises(openai.BadRequestError) as error:
        api.chat.completions.create(
            model="sentiment",
            messages=[{"role": "user", "content": "cow"}],
            response_format={"type": "json_object"},
        )
    assert error.value.param == "response_format" and "labels" in error.value.message


def test_a_stop_sequence_cannot_cut_a_label(client):
    api, _ = client
    with pytest.raises(openai.BadRequestError, match="stop: a classification answer is one"):
        api.completions.create(model="sentiment", prompt="good", stop=["o"])


def test_plain_http_errors_have_openai_shape(catalogue_file: Path, vllm):
    _, url = vllm
    gateway = build_gateway(str(catalogue_file), url, engine="vllm", base_model=BASE_MODEL)
    with serve_app(gateway.app) as gateway_url:
        response = httpx.post(f"{gateway_url}/v1/completions", json={"model": "sounds"})
        missing = httpx.get(f"{gateway_url}/v1/models/nope")
        listed = httpx.post(
            f"{gateway_url}/v1/completions", json={"model": "sounds", "prompt": ["a", "b"]}
        )
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "message": "prompt: required, a non-empty string",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": None,
        }
    }
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    assert listed.json()["error"]["message"].startswith("prompt: one prompt per request")


@pytest.mark.slow
def test_the_real_engine_behind_the_gateway_honours_what_is_passed_on(real_vllm, tmp_path):
    """With the real vLLM: streaming gives the non-streamed answer, `seed` with
    `temperature` repeats itself, `stop` and `max_tokens` end an answer with the engine's
    finish reason, and a classification's usage is the engine's count."""
    import json

    engine = real_vllm.engine
    doc = {
        "revision": "r",
        "tasks": [
            {"name": "mood", "type": "classification", "instruction": "Classify.",
             "labels": LABELS, "metric": "accuracy"},
            {"name": "echo", "type": "generation", "instruction": "Repeat the text.",
             "metric": "rougeL"},
        ],
    }  # fmt: skip
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(doc))
    gateway = build_gateway(
        str(catalogue), engine.url, engine="vllm", base_model=engine.model, api_key=engine.api_key()
    )
    with serve_app(gateway.app) as gateway_url:
        api = openai.OpenAI(base_url=f"{gateway_url}/v1", api_key="unused", max_retries=0)
        ask = [{"role": "user", "content": "one two three four five"}]
        whole = api.chat.completions.create(model="echo", messages=ask, max_tokens=12)
        streamed = "".join(
            c.choices[0].delta.content or ""
            for c in api.chat.completions.create(
                model="echo", messages=ask, max_tokens=12, stream=True
            )
            if c.choices
        )
        assert streamed == whole.choices[0].message.content
        sampled = [
            api.chat.completions.create(
                model="echo", messages=ask, max_tokens=12, temperature=1.5, seed=11
            )
            .choices[0]
            .message.content
            for _ in range(2)
        ]
        assert sampled[0] == sampled[1]
        cut = api.chat.completions.create(model="echo", messages=ask, max_tokens=1)
        assert cut.choices[0].finish_reason == "length"
        two = api.chat.completions.create(
            model="echo", messages=ask, max_tokens=4, n=2, temperature=1.0, seed=3,
            logprobs=True, top_logprobs=2,
        )  # fmt: skip
        assert len(two.choices) == 2
        first = two.choices[0].logprobs.content[0]
        assert first.logprob <= 0 and len(first.top_logprobs) == 2
        mood = api.chat.completions.create(model="mood", messages=ask)
        assert mood.choices[0].message.content in LABELS
        assert mood.usage.prompt_tokens > 0 and mood.usage.completion_tokens > 0
