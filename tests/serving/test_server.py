"""The development server against TGI's two Python clients and raw HTTP.

What matters to callers: the right adapter answers (and the same as peft would), the
grammar holds, streams add up to the whole answer, mistakes come back as 4xx with a
message while the server keeps serving, and concurrent requests do not mix adapters.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import regex

from .conftest import LABELS, MAX_INPUT_TOKENS, Served

PROMPT = "the film was good"


def chat_prompt(tokenizer: Any, text: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
    )


def post(served: Served, path: str, body: Any) -> httpx.Response:
    return httpx.post(served.url + path, json=body, timeout=60)


def generate_ids(served: Served, inputs: str, adapter: str | None, **parameters: Any) -> list:
    parameters = {"max_new_tokens": 8, "details": True, "adapter_id": adapter, **parameters}
    response = post(served, "/generate", {"inputs": inputs, "parameters": parameters})
    assert response.status_code == 200, response.text
    return [token["id"] for token in response.json()["details"]["tokens"]]


def direct_ids(reference: Any, inputs: str, adapter: str | None, max_new_tokens: int = 8) -> list:
    import torch

    tokenizer, model = reference
    ids = tokenizer(inputs, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        if adapter is None:
            with model.disable_adapter():
                out = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False)
        else:
            model.set_adapter(adapter)
            out = model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, ids.shape[1] :].tolist()


# -- adapter routing -----------------------------------------------------------------------


def test_each_adapter_answers_as_peft_does(served: Served, reference: Any) -> None:
    outputs = {}
    for adapter in (None, "sentiment", "sounds"):
        outputs[adapter] = generate_ids(served, PROMPT, adapter)
        assert outputs[adapter] == direct_ids(reference, PROMPT, adapter), adapter
    assert len({tuple(ids) for ids in outputs.values()}) == 3, "adapters must change the answer"


def test_base_model_aliases(served: Served) -> None:
    base = generate_ids(served, PROMPT, None)
    assert generate_ids(served, PROMPT, "tgi") == base
    assert generate_ids(served, PROMPT, "tiny-llama") == base


def test_inference_client_generate_and_stream(served: Served) -> None:
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=served.url)
    full = client.text_generation(PROMPT, max_new_tokens=12, adapter_id="sounds", details=True)
    assert full.details is not None and full.details.generated_tokens == len(full.details.tokens)
    assert full.details.finish_reason in {"length", "eos_token"}
    assert all(t.logprob is not None and t.logprob <= 0 for t in full.details.tokens)
    events = list(
        client.text_generation(
            PROMPT, max_new_tokens=12, adapter_id="sounds", details=True, stream=True
        )
    )
    streamed = "".join(e.token.text for e in events if not e.token.special)
    assert streamed == full.generated_text == events[-1].generated_text
    assert [e.token.id for e in events] == [t.id for t in full.details.tokens]
    assert events[-1].details is not None and events[-1].details.finish_reason == (
        full.details.finish_reason
    )


def test_text_generation_client(served: Served) -> None:
    # text-generation 0.7.0 declares huggingface-hub<1, so it cannot be an extra next to
    # huggingface_hub 2.x: it is installed with `pip install --no-deps text-generation==0.7.0`.
    pytest.importorskip("text_generation")
    from text_generation import Client
    from text_generation.types import Grammar, GrammarType

    client = Client(served.url, timeout=60)
    full = client.generate(PROMPT, max_new_tokens=10, decoder_input_details=True)
    assert full.details.prefill[0].logprob is None and len(full.details.prefill) > 1
    streamed = client.generate_stream(PROMPT, max_new_tokens=10)
    assert "".join(r.token.text for r in streamed if not r.token.special) == full.generated_text
    pattern = r"(cat|dog) says [a-z]{2,5}"
    constrained = client.generate(
        PROMPT, max_new_tokens=20, grammar=Grammar(type=GrammarType.Regex, value=pattern)
    )
    assert regex.fullmatch(pattern, constrained.generated_text), constrained.generated_text
    assert constrained.details.finish_reason == "eos_token"


# -- grammar -------------------------------------------------------------------------------


@pytest.mark.parametrize("adapter", [None, "sentiment", "sounds"])
def test_label_grammar_is_exact(served: Served, adapter: str | None) -> None:
    pattern = "|".join(regex.escape(label) for label in LABELS)
    for text in ("the day was awful", "the cow says", "a b c"):
        body = {
            "inputs": text,
            "parameters": {
                "max_new_tokens": 10,
                "adapter_id": adapter,
                "grammar": {"type": "regex", "value": pattern},
                "details": True,
            },
        }
        result = post(served, "/generate", body).json()
        assert result["generated_text"] in LABELS
        assert result["details"]["finish_reason"] == "eos_token"


def test_sampled_grammar_and_seed(served: Served) -> None:
    pattern = r"[0-9]{3}-[a-f]+"
    body = {
        "inputs": PROMPT,
        "parameters": {
            "max_new_tokens": 12,
            "do_sample": True,
            "temperature": 1.5,
            "seed": 7,
            "grammar": {"type": "regex", "value": pattern},
            "details": True,
        },
    }
    first = post(served, "/generate", body).json()
    assert regex.fullmatch(pattern, first["generated_text"], partial=True)
    assert first["details"]["seed"] == 7
    assert post(served, "/generate", body).json() == first, "a seed makes sampling repeatable"


def test_chat_completion_with_adapter_and_regex(served: Served, reference: Any) -> None:
    from huggingface_hub import InferenceClient

    tokenizer, _ = reference
    client = InferenceClient(base_url=served.url)
    messages = [{"role": "user", "content": "What sound does it make? the dog says"}]
    out = client.chat_completion(
        messages, model="sounds", max_tokens=8, temperature=0, logprobs=True
    )
    direct = post(
        served,
        "/generate",
        {
            "inputs": chat_prompt(tokenizer, messages[0]["content"]),
            "parameters": {"max_new_tokens": 8, "adapter_id": "sounds"},
        },
    ).json()
    # chat templates spell out their own special tokens: the prompt adds none of its own
    assert out.choices[0].message.content == direct["generated_text"]
    assert out.model == "sounds" and out.usage.completion_tokens >= 1
    assert out.choices[0].logprobs is not None
    chunks = list(
        client.chat_completion(messages, model="sounds", max_tokens=8, temperature=0, stream=True)
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == direct["generated_text"]
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    label = client.chat_completion(
        messages,
        model="sentiment",
        max_tokens=10,
        temperature=0,
        response_format={"type": "regex", "value": "pos|neg|neutral"},
    )
    assert label.choices[0].message.content in LABELS


# -- classification ------------------------------------------------------------------------


def test_classify_scores_labels_as_peft_does(served: Served, reference: Any) -> None:
    import torch

    tokenizer, model = reference
    prompt = chat_prompt(tokenizer, "Classify the sentiment.\n\nthe day was bad")
    body = {"inputs": prompt, "labels": LABELS, "adapter_id": "sentiment"}
    result = post(served, "/classify", body).json()
    assert sum(s["probability"] for s in result["scores"]) == pytest.approx(1.0)
    model.set_adapter("sentiment")
    expected = []
    prompt_ids = tokenizer(prompt)["input_ids"]
    for label in LABELS:
        option = [*tokenizer(label, add_special_tokens=False)["input_ids"], tokenizer.eos_token_id]
        ids = torch.tensor([prompt_ids + option])
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=ids).logits[0], dim=-1)
        start = len(prompt_ids)
        expected.append(sum(float(logprobs[start + i - 1, t]) for i, t in enumerate(option)))
    got = [s["logprob"] for s in result["scores"]]
    assert got == pytest.approx(expected, abs=1e-4)
    assert result["label"] == LABELS[max(range(3), key=expected.__getitem__)]
    messages = {
        "messages": [{"role": "user", "content": "Classify the sentiment.\n\nthe day was bad"}]
    }
    by_messages = post(
        served, "/classify", {**messages, "labels": LABELS, "adapter_id": "sentiment"}
    )
    assert [s["logprob"] for s in by_messages.json()["scores"]] == pytest.approx(got, abs=1e-5)


# -- errors --------------------------------------------------------------------------------


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error_type"] and all(w in body["error"] for w in words), body


def test_unknown_adapter_is_422_never_the_base_model(served: Served) -> None:
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import ValidationError

    body = {"inputs": PROMPT, "parameters": {"adapter_id": "sentimnet"}}
    assert_error(post(served, "/generate", body), 422, "sentimnet", "sentiment", "sounds")
    assert_error(post(served, "/generate_stream", body), 422, "sentimnet")
    chat = {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
    assert_error(post(served, "/v1/chat/completions", chat), 422, "nope")
    assert_error(
        post(served, "/classify", {"inputs": "x", "labels": ["a"], "adapter_id": "nope"}), 422
    )
    with pytest.raises(ValidationError, match="sentimnet"):
        InferenceClient(base_url=served.url).text_generation(PROMPT, adapter_id="sentimnet")


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"parameters": {}}, 422, ["inputs"]),
        ({"inputs": ""}, 422, ["empty"]),
        ({"inputs": PROMPT, "parameters": {"adapter": "sounds"}}, 422, ["adapter"]),
        ({"inputs": PROMPT, "parameters": {"temperature": 0}}, 422, ["temperature"]),
        ({"inputs": PROMPT, "parameters": {"max_new_tokens": 0}}, 422, ["max_new_tokens"]),
        (
            {"inputs": PROMPT, "parameters": {"grammar": {"type": "regex", "value": "(a"}}},
            422,
            ["regex"],
        ),
        (
            {"inputs": PROMPT, "parameters": {"grammar": {"type": "json", "value": {}}}},
            422,
            ["json"],
        ),
        ({"inputs": PROMPT, "parameters": {"grammar": {"type": "ebnf"}}}, 422, ["grammar"]),
        ({"inputs": "a " * (MAX_INPUT_TOKENS + 20)}, 422, [str(MAX_INPUT_TOKENS)]),
        ({"inputs": PROMPT, "parameters": {"max_new_tokens": 10_000}}, 422, ["max_new_tokens"]),
    ],
)
def test_malformed_requests_are_4xx_with_a_message(
    served: Served, body: dict, status: int, words: list[str]
) -> None:
    assert_error(post(served, "/generate", body), status, *words)


def test_server_survives_bad_requests(served: Served) -> None:
    broken = httpx.post(
        served.url + "/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(broken, 400, "JSON")
    assert_error(post(served, "/classify", {"inputs": "x", "messages": [], "labels": ["a"]}), 422)
    assert_error(post(served, "/v1/chat/completions", {"messages": []}), 422, "messages")
    assert_error(httpx.get(served.url + "/nowhere"), 404)
    assert generate_ids(served, PROMPT, "sounds"), "still serving"


# -- concurrency and operations ------------------------------------------------------------


def test_concurrent_requests_match_sequential(served: Served) -> None:
    jobs = [(f"{PROMPT} {i % 4}", ("sentiment", "sounds", None)[i % 3]) for i in range(16)]
    sequential = [generate_ids(served, text, adapter) for text, adapter in jobs]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(lambda job: generate_ids(served, *job), jobs))
    assert concurrent == sequential


def test_info_health_models_catalogue_metrics(served: Served) -> None:
    info = httpx.get(served.url + "/info").json()
    assert info["model_id"] == "tiny-llama" and info["adapters"] == ["sentiment", "sounds"]
    assert info["max_input_tokens"] == MAX_INPUT_TOKENS and info["model_device_type"] == "cpu"
    assert info["catalogue"]["tasks"][0]["labels"] == LABELS
    assert httpx.get(served.url + "/health").status_code == 200
    ids = [m["id"] for m in httpx.get(served.url + "/v1/models").json()["data"]]
    assert ids == ["tiny-llama", "sentiment", "sounds"]
    assert httpx.get(served.url + "/catalogue").json()["tasks"][1]["name"] == "sounds"

    def count(text: str, route: str, adapter: str, status: int) -> float:
        key = f'mtd_serving_requests_total{{route="{route}",adapter="{adapter}",status="{status}"}}'
        lines = [line for line in text.splitlines() if line.startswith(key + " ")]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = httpx.get(served.url + "/metrics").text
    generate_ids(served, PROMPT, "sounds")
    post(served, "/generate", {"inputs": PROMPT, "parameters": {"adapter_id": "zzz"}})
    after = httpx.get(served.url + "/metrics").text
    assert count(after, "/generate", "sounds", 200) == count(before, "/generate", "sounds", 200) + 1
    assert count(after, "/generate", "__unknown__", 422) == (
        count(before, "/generate", "__unknown__", 422) + 1
    )
    assert 'mtd_serving_request_duration_seconds_bucket{route="/generate",le="+Inf"}' in after
    assert 'mtd_serving_generated_tokens_total{adapter="sounds"}' in after


def test_stream_error_event_shape(served: Served) -> None:
    """The SSE framing both clients parse: `data:` lines of JSON, one event per token."""
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "details": True}}
    with httpx.stream("POST", served.url + "/generate_stream", json=body) as response:
        lines = [line for line in response.iter_lines() if line]
    events = [json.loads(line.removeprefix("data:")) for line in lines]
    assert all(line.startswith("data:") for line in lines)
    assert [e["index"] for e in events] == list(range(1, len(events) + 1))
    assert all(e["generated_text"] is None for e in events[:-1])
    assert events[-1]["details"]["generated_tokens"] == len(events)


def test_grammar_with_characters_split_over_tokens(served: Served) -> None:
    """The tiny tokenizer spells CJK characters as byte tokens: labels must still be exact."""
    labels = ["正面", "负面", "中性"]
    for adapter in ("sentiment", "sounds"):
        body = {
            "inputs": "the day was awful",
            "parameters": {
                "max_new_tokens": 12,
                "adapter_id": adapter,
                "grammar": {"type": "regex", "value": "|".join(labels)},
            },
        }
        assert post(served, "/generate", body).json()["generated_text"] in labels


def test_command_line_start_up_errors(
    served: Served, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from mtd_trainer.serving.__main__ import main

    assert main(["--base-model", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    not_adapter = ["--base-model", str(served.base), "--adapter", f"a={tmp_path}"]
    assert main(not_adapter) == 2
    assert "not a peft adapter" in capsys.readouterr().err
    bad_catalogue = tmp_path / "catalogue.json"
    bad_catalogue.write_text(
        json.dumps({"tasks": [{"name": "t", "instruction": "i", "adapter": "x"}]})
    )
    assert main(["--base-model", str(served.base), "--catalogue", str(bad_catalogue)]) == 2
    assert "not loaded" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--base-model", str(served.base), "--adapter", "no-equals-sign"])


def test_stop_sequences_and_full_text(served: Served) -> None:
    body = {"inputs": PROMPT, "parameters": {"max_new_tokens": 8, "details": True}}
    free = post(served, "/generate", body).json()
    texts = [t["text"] for t in free["details"]["tokens"] if not t["special"]]
    stop = "".join(texts[:2])
    assert stop, free
    body["parameters"] |= {"stop": [stop], "return_full_text": True}
    stopped = post(served, "/generate", body).json()
    assert stopped["details"]["finish_reason"] == "stop_sequence"
    assert stopped["generated_text"] == PROMPT + stop  # TGI keeps the stop sequence


def test_chat_logprobs_and_unsupported_formats(served: Served) -> None:
    chat = {
        "model": "sentiment",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "the day"}]}],
        "max_tokens": 4,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": 2,
    }
    out = post(served, "/v1/chat/completions", chat).json()
    entries = out["choices"][0]["logprobs"]["content"]
    assert entries and all(len(e["top_logprobs"]) == 2 for e in entries)
    assert all(e["top_logprobs"][0]["logprob"] >= e["logprob"] for e in entries)
    json_format = {**chat, "response_format": {"type": "json_object", "value": {}}}
    assert_error(post(served, "/v1/chat/completions", json_format), 422, "not supported")
    assert_error(post(served, "/v1/chat/completions", {**chat, "n": 2}), 422, "`n`")
