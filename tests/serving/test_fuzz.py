"""Bad input fuzzed at the development server (hypothesis): every answer is a 4xx with a
JSON error message, or a 200 for a request that is valid; never a 5xx, never an error
event inside a 200 stream; and the server still answers a valid request the same way
after each one.

Bodies are valid requests of each route mutated field by field (wrong types, NaN and
infinities, huge and negative numbers, lone surrogates, oversized inputs and label
sets, bad regex grammars, unknown grammar types and adapter ids), arbitrary JSON values,
and bytes that are not JSON. Generation lengths stay small so a run takes seconds.
The app runs in-process (Starlette's TestClient) on the same tiny model and adapters as
the other serving tests. Deterministic (derandomize) for CI.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtd_trainer.serving.schemas import ChatRequest, ClassifyRequest, GenerateParameters

from .conftest import LABELS, MAX_INPUT_TOKENS, MAX_TOTAL_TOKENS, Served

FUZZ = settings(
    max_examples=120,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
SEEN: Counter[str] = Counter()  # outcomes, e.g. "/generate 422"; printed at the end
PROMPT = "the film was good"
VALID = {"inputs": PROMPT, "parameters": {"max_new_tokens": 3, "adapter_id": "sounds"}}
EXPECTED: dict[str, Any] = {}  # the answer to VALID, before any fuzzing


@pytest.fixture(scope="module")
def client(served: Served) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from mtd_trainer.serving import Engine, build_app

    engine = Engine(
        served.base,
        served.adapters,
        model_id="tiny-llama",
        max_input_tokens=MAX_INPUT_TOKENS,
        max_total_tokens=MAX_TOTAL_TOKENS,
    )
    with TestClient(build_app(engine, served.catalogue), raise_server_exceptions=False) as c:
        EXPECTED.update(c.post("/generate", json=VALID).json())
        yield c
    print("\nserving fuzz: " + ", ".join(f"{k}: {n}" for k, n in sorted(SEEN.items())))
    total = sum(n for key, n in SEEN.items() if key.startswith("/"))
    print(f"serving fuzz: {total} requests, {SEEN['sweep requests']} of them in the sweep")


# -- strategies ------------------------------------------------------------------------------

# Any text, and lone surrogates, control characters and CJK (JSON carries a surrogate as a
# \ud800 escape, and Python's json decodes it to a str no encoder accepts).
text = st.one_of(
    st.text(max_size=30),
    st.text(max_size=30),
    st.text(
        st.sampled_from(["\ud800", "\udfff", "\x00", "\u200b", "a", " ", "é", "正"]), max_size=6
    ),
)
ODD_FLOATS = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-45, 1e-300, 1.0, 2.0, 3.0, 1e308]
ODD_INTS = [0, -1, 2**31, 2**53 + 1, 2**63, 2**64 - 1, 2**64, 2**70, -(2**70)]
floats = st.one_of(
    st.floats(0.05, 0.95),  # in range for every parameter
    st.floats(0.05, 0.95),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([*ODD_FLOATS, -1e308]),
)
ints = st.one_of(
    st.integers(1, 5),  # in range for every parameter
    st.integers(-3, 12),
    st.sampled_from(ODD_INTS),
)
json_values = st.recursive(
    st.none() | st.booleans() | floats | ints | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)
adapters = st.one_of(
    st.sampled_from(["sentiment", "sounds", "tgi", "dummy", "tiny-llama", "sentimnet", ""]),
    text,
)
patterns = st.one_of(
    st.sampled_from(["pos|neg|neutral", r"[0-9]{3}-[a-f]+", "a^", "(?:)", r"\d+", ".*", "正面"]),
    st.text(st.sampled_from(list("ab0()[]{}*+?|^$.\\-,:<>=!P~正\ud800")), max_size=12),
)
grammars = st.fixed_dictionaries(
    {
        "type": st.sampled_from(
            ["regex", "regex", "regex", "json", "json_object", "json_schema", "x"]
        )
    },
    optional={"value": st.one_of(patterns, patterns, patterns, json_values)},
)
inputs = st.one_of(
    st.just(PROMPT),
    text,
    st.sampled_from([PROMPT, "", " ", "\n", "<|im_start|>", "<|im_end|>", "正面"]),
    st.integers(1, 3000).map(lambda n: "the cat " * n),  # up to 6000 tokens: oversized
)
new_tokens = st.one_of(st.integers(1, 3), st.integers(1, 3), ints)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "system", "assistant"]) | text},
    optional={
        "content": inputs
        | st.none()
        | st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["text", "text", "image_url"])},
                optional={"text": text},
            ),
            max_size=3,
        )
    },
)
messages = st.lists(message, min_size=1, max_size=4)  # [] comes from the mutations
labels = st.one_of(
    st.lists(text, max_size=5),
    st.just(LABELS),
    st.just(["正面", "负面"]),
    st.integers(50, 2000).map(lambda n: [f"label {i}" for i in range(n)]),  # many labels
    st.integers(1, 400).map(lambda n: ["pos", "x " * n]),  # a label longer than the room
)


@st.composite
def some_fields(
    draw: st.DrawFn, required: dict[str, Any], optional: dict[str, Any], most: int = 3
) -> dict[str, Any]:
    """The required fields and up to `most` of the optional ones: a request with a dozen
    odd values is refused for the first; few fields let each value reach the model."""
    body = {key: draw(values) for key, values in required.items()}
    for key in draw(st.lists(st.sampled_from(sorted(optional)), max_size=most, unique=True)):
        body[key] = draw(optional[key])
    return body


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[dict[str, Any]]) -> Any:
    """A body; a third of the time with one field (maybe nested) replaced by any JSON value,
    dropped, or joined by an unknown field."""
    body = draw(bodies)
    if draw(st.integers(0, 2)) != 2:
        return body
    objects = [body, *(v for v in body.values() if isinstance(v, dict))]
    target = draw(st.sampled_from(objects))
    action = draw(st.sampled_from(["replace", "drop", "add"]) if target else st.just("add"))
    if action == "add":
        target[draw(text)] = draw(json_values)
    else:
        key = draw(st.sampled_from(sorted(target)))
        if action == "drop":
            del target[key]
        else:
            target[key] = draw(json_values)
    return body


generate_bodies = mutated(
    some_fields(
        {
            "inputs": inputs,
            "parameters": some_fields(
                {"max_new_tokens": new_tokens},
                {
                    "adapter_id": adapters,
                    "temperature": floats,
                    "top_p": floats,
                    "top_k": ints,
                    "typical_p": floats,
                    "repetition_penalty": floats,
                    "frequency_penalty": floats,
                    "seed": ints,
                    "do_sample": st.booleans(),
                    "details": st.booleans(),
                    "decoder_input_details": st.booleans(),
                    "return_full_text": st.booleans(),
                    "stop": st.lists(text, max_size=6),
                    "top_n_tokens": ints,
                    "truncate": ints,
                    "best_of": ints,
                    "watermark": st.booleans(),
                    "grammar": grammars,
                },
                most=4,
            ),
        },
        {"stream": st.booleans()},
    )
)
chat_bodies = mutated(
    some_fields(
        {"messages": messages, "max_tokens": new_tokens},
        {
            "model": adapters,
            "max_completion_tokens": ints,
            "temperature": floats,
            "top_p": floats,
            "seed": ints,
            "stop": text | st.lists(text, max_size=6),
            "stream": st.booleans(),
            "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
            "logprobs": st.booleans(),
            "top_logprobs": ints,
            "response_format": grammars,
            "frequency_penalty": floats,
            "presence_penalty": floats,
            "n": ints,
            "tools": st.lists(json_values, max_size=2),
        },
        most=4,
    )
)
classify_bodies = mutated(
    st.one_of(
        some_fields({"labels": labels, "inputs": inputs}, {"adapter_id": adapters}),
        some_fields({"labels": labels, "messages": messages}, {"adapter_id": adapters}),
        some_fields({"labels": labels}, {"inputs": inputs, "messages": messages}),
    )
)


# -- checks ----------------------------------------------------------------------------------


def check(
    client: Any,
    route: str,
    raw: bytes,
    content_type: str = "application/json",
    *,
    still_serving: bool = True,
) -> None:
    response = client.post(route, content=raw, headers={"content-type": content_type})
    SEEN[f"{route} {response.status_code}"] += 1
    what = f"{route} {raw[:300]!r} -> {response.status_code} {response.text[:300]}"
    assert response.status_code == 200 or 400 <= response.status_code < 500, what
    if response.status_code != 200:
        body = response.json()
        assert isinstance(body.get("error"), str) and body["error"].strip(), what
        assert body.get("error_type"), what
    elif response.headers["content-type"].startswith("text/event-stream"):
        lines = [line for line in response.text.splitlines() if line]
        assert lines and all(line.startswith("data:") for line in lines), what
        events = [line.removeprefix("data:").strip() for line in lines]
        errors = [e for e in events if e != "[DONE]" and "error" in json.loads(e)]
        assert not errors, what  # a request that passed validation must not fail midway
    else:
        assert isinstance(response.json(), dict | list), what
    if not still_serving:
        return
    # Still serving, and the same answer as before: no request leaves state behind.
    after = client.post("/generate", json=VALID)
    assert after.status_code == 200 and after.json() == EXPECTED, what


def truncations(raw: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(raw)).map(lambda cut: raw[:cut])


def encode(body: Any) -> bytes:
    return json.dumps(body, allow_nan=True).encode()  # NaN/Infinity: Python's json reads them


@FUZZ
@given(body=generate_bodies, route=st.sampled_from(["/generate", "/generate_stream", "/"]))
def test_fuzzed_generate_requests(client: Any, body: Any, route: str) -> None:
    check(client, route, encode(body))


@FUZZ
@given(body=chat_bodies)
def test_fuzzed_chat_requests(client: Any, body: Any) -> None:
    check(client, "/v1/chat/completions", encode(body))


@FUZZ
@given(body=classify_bodies)
def test_fuzzed_classify_requests(client: Any, body: Any) -> None:
    check(client, "/classify", encode(body))


@settings(FUZZ, max_examples=60)
@given(
    route=st.sampled_from(["/generate", "/generate_stream", "/v1/chat/completions", "/classify"]),
    body=st.one_of(
        json_values.map(encode),
        st.binary(max_size=64),
        generate_bodies.map(encode).flatmap(truncations),
    ),
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form"]),
)
def test_fuzzed_bytes(client: Any, route: str, body: bytes, content_type: str) -> None:
    check(client, route, body, content_type)


# Every field of each route, one at a time, at each odd value: a sweep, not a sample.
ODD_VALUES = [*ODD_FLOATS, -1e308, *ODD_INTS, "3", "\ud800", "", None, True, [], {}, ["x"] * 5]
ODD_NAMES = ["\ud800", "adapter", "", "x" * 300]  # unknown fields: some are refused by name
SWEEPS = [
    # route, valid body, the object whose fields are swept (None: the body), its fields
    (
        "/generate",
        {"inputs": PROMPT, "parameters": {"max_new_tokens": 2}},
        "parameters",
        [*sorted(GenerateParameters.model_fields), *ODD_NAMES],
    ),
    (  # sampling: seed, temperature, top-k/p and penalties all reach the sampler
        "/generate_stream",
        {"inputs": PROMPT, "parameters": {"max_new_tokens": 2, "do_sample": True}},
        "parameters",
        sorted(GenerateParameters.model_fields),
    ),
    ("/generate", {"inputs": PROMPT}, None, ["inputs", "parameters", "stream", *ODD_NAMES]),
    (  # chat samples unless temperature is 0; streamed, an error mid-way is an event
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True},
        None,
        [*sorted(ChatRequest.model_fields), *ODD_NAMES],
    ),
    (
        "/classify",
        {"inputs": PROMPT, "labels": LABELS},
        None,
        [*sorted(ClassifyRequest.model_fields), *ODD_NAMES],
    ),
]


def test_every_field_at_every_odd_value(client: Any) -> None:
    sent = 0
    for route, valid, where, fields in SWEEPS:
        for field in fields:
            for value in ODD_VALUES:
                body = copy.deepcopy(valid)
                (body[where] if where else body)[field] = value
                check(client, route, encode(body), still_serving=sent % 10 == 0)
                sent += 1
    SEEN["sweep requests"] += sent
    check(client, "/generate", encode(VALID))
