"""The gateway in front of a server that follows vLLM's API (the stand-in): no torch here."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from mtd_contract.upstream import Question, Upstream, UpstreamError
from mtd_operator.gateway.app import MAX_BODY_BYTES, build_gateway
from tests.support.net import serve_app
from tests.support.processes import heavy_imports

from .conftest import BASE_MODEL, LABELS, catalogue_doc, write_catalogue
from .vllm_standin import VllmStandIn

TEXTS = ["the day was awful", "the film was good", "x", "正面 or not", "a b c d e f g"]


@pytest.fixture
def gateway(catalogue_file: Path, vllm):
    standin, url = vllm
    gw = build_gateway(str(catalogue_file), url, engine="vllm")
    with TestClient(gw.app) as client:
        yield client, standin


def test_routes_each_task_to_its_adapter_with_vllm_names(gateway) -> None:
    client, standin = gateway
    sounds = client.post("/tasks/sounds", json={"text": "the cat says"}).json()
    echo = client.post("/tasks/echo", json={"text": "hello there"}).json()
    assert sounds["adapter"] == "sounds" and sounds["output"].startswith("sounds says:")
    assert echo["adapter"] is None and echo["output"].startswith(f"{BASE_MODEL} says:")
    # vLLM's own names: the LoRA module, and the served base-model id (never "tgi").
    assert [r["model"] for r in standin.requests] == ["sounds", BASE_MODEL]
    assert sounds["score"] == pytest.approx(-0.25)
    # The prompt is the task's, formatted as training formatted it.
    assert standin.requests[0]["messages"] == [
        {"role": "user", "content": "What sound does it make?\n\nthe cat says"}
    ]


def test_classification_answers_only_labels_via_structured_outputs(gateway) -> None:
    client, standin = gateway
    outputs = set()
    for text in TEXTS:
        answer = client.post("/tasks/sentiment", json={"text": text}).json()
        assert answer["output"] in LABELS and answer["type"] == "classification"
        assert answer["score"] == pytest.approx(math.exp(-0.25))
        outputs.add(answer["output"])
    assert len(outputs) > 1  # the stand-in's choice depends on the prompt: not hard-coded
    for request in standin.requests:
        assert request["structured_outputs"] == {"choice": LABELS}
        assert "response_format" not in request and request["model"] == "sentiment"
        assert request["temperature"] == 0


def test_unknown_task_is_a_404_naming_the_known_tasks(gateway) -> None:
    client, standin = gateway
    for response in (
        client.post("/tasks/sentimnet", json={"text": "x"}),
        client.post("/v1/chat/completions", json={"model": "tgi", "messages": []}),
        client.post("/v1/completions", json={"model": "sentimnet", "prompt": "x"}),
    ):
        assert response.status_code == 404
        error = response.json()["error"]  # OpenAI's shape on /v1, TGI's on /tasks
        assert "known tasks: echo, sentiment, sounds" in (
            error["message"] if isinstance(error, dict) else error
        )
    assert standin.requests == []  # never a silent base-model answer


def test_catalogue_change_is_picked_up_without_a_restart(gateway, catalogue_file: Path) -> None:
    client, standin = gateway
    assert client.post("/tasks/topic", json={"text": "x"}).status_code == 404
    standin.loras["topic"] = "/workspace/b/topic"
    new_task = {
        "name": "topic",
        "type": "classification",
        "instruction": "Topic?",
        "labels": ["sport", "tech"],
        "adapter": "topic",
    }
    write_catalogue(catalogue_file, catalogue_doc(new_task))
    answer = client.post("/tasks/topic", json={"text": "the match"}).json()
    assert answer["output"] in ("sport", "tech") and answer["adapter"] == "topic"
    assert [t["name"] for t in client.get("/tasks").json()["tasks"]][-1] == "topic"
    # A broken new version is refused; the last good catalogue keeps serving.
    catalogue_file.write_text('{"tasks": [{"name": "bad", "type": "classification"}]}')
    assert client.post("/tasks/topic", json={"text": "the match"}).status_code == 200
    assert client.get("/health").status_code == 200


def test_tasks_lists_adapters_and_verdicts(gateway) -> None:
    client, _ = gateway
    tasks = {t["name"]: t for t in client.get("/tasks").json()["tasks"]}
    assert tasks["sentiment"]["adapter"] == "sentiment"
    assert tasks["sentiment"]["verdict"] == "Qualified"
    assert tasks["sentiment"]["labels"] == LABELS
    assert "adapter" not in tasks["echo"]  # the base model answers it
    models = client.get("/v1/models").json()["data"]
    assert [m["id"] for m in models] == ["sentiment", "sounds", "echo"]


def test_openai_routes_take_the_task_as_model(gateway) -> None:
    client, standin = gateway
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "sentiment", "messages": [{"role": "user", "content": "the film was good"}]},
    ).json()
    assert chat["object"] == "chat.completion" and chat["model"] == "sentiment"
    assert chat["choices"][0]["message"]["content"] in LABELS
    parts = [{"type": "text", "text": "the cat "}, {"type": "text", "text": "says"}]
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "sounds", "messages": [{"role": "user", "content": parts}]},
    ).json()
    assert standin.requests[-1]["messages"][0]["content"].endswith("\n\nthe cat says")
    completion = client.post(
        "/v1/completions", json={"model": "sounds", "prompt": "the dog says", "max_tokens": 3}
    ).json()
    assert completion["object"] == "text_completion"
    assert completion["choices"][0]["text"] == "sounds says: the"
    assert standin.requests[-1]["max_tokens"] == 3


def test_an_openai_client_works_unchanged(catalogue_file: Path, vllm) -> None:
    from huggingface_hub import InferenceClient

    _, url = vllm
    gw = build_gateway(str(catalogue_file), url)  # the engine is found by asking it
    with serve_app(gw.app) as gateway_url:
        out = InferenceClient(base_url=gateway_url).chat_completion(
            [{"role": "user", "content": "the day was awful"}], model="sentiment"
        )
    assert out.choices[0].message.content in LABELS
    assert gw.upstream.engine == "vllm" and gw.upstream.base_model == BASE_MODEL


def test_bad_requests_name_the_field(gateway) -> None:
    client, standin = gateway
    cases = [
        ("/tasks/sounds", {}, "text"),
        ("/tasks/sounds", {"text": "x", "max_new_tokens": 0}, "max_new_tokens"),
        ("/tasks/sounds", {"text": "x", "max_new_tokens": True}, "max_new_tokens"),
        ("/v1/chat/completions", {"model": "sounds", "messages": "hi"}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}]}, "model"),
        (
            "/v1/chat/completions",
            {"model": "sounds", "stream": "yes", "messages": [{"role": "user", "content": "x"}]},
            "stream",
        ),
        ("/v1/completions", {"model": "sounds", "prompt": ["a", "b"]}, "prompt"),
    ]
    for path, body, field in cases:
        response = client.post(path, json=body)
        error = response.json()["error"]
        if path.startswith("/v1/"):  # OpenAI's shape and status
            assert response.status_code == 400, (path, body)
            assert error["param"] == field and error["message"].startswith(f"{field}: ")
        else:
            assert response.status_code == 422, (path, body)
            assert field in error
    assert client.post("/tasks/sounds", content=b"{not json").status_code == 400
    assert client.post("/tasks/sounds", json=[1]).status_code == 422
    assert standin.requests == []


def test_hostile_bodies_get_4xx_answers_in_bounded_memory(gateway) -> None:
    """A body past MAX_BODY_BYTES is refused while it streams in (413), deep nesting is a
    400 (not a plain-text 500), and a huge unknown model name is quoted back cut short."""
    client, standin = gateway
    too_big = b'{"text": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    response = client.post("/tasks/sounds", content=too_big)
    assert response.status_code == 413 and str(MAX_BODY_BYTES) in response.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"text": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    assert client.post("/tasks/sounds", content=chunks()).status_code == 413
    response = client.post("/tasks/sounds", content=b"[" * 100_000)
    assert response.status_code == 400 and "too deeply" in response.json()["error"]
    name = "m" * 500_000
    response = client.post("/v1/completions", json={"model": name, "prompt": "x"})
    assert response.status_code == 404 and len(response.content) < 2000
    assert "(500002 chars)" in response.json()["error"]["message"]
    assert standin.requests == []


def test_upstream_refusals_pass_through(catalogue_file: Path, vllm) -> None:
    standin, url = vllm
    del standin.loras["sounds"]  # e.g. a pod that has not loaded it yet
    gw = build_gateway(str(catalogue_file), url, engine="vllm")
    with TestClient(gw.app) as client:
        response = client.post("/tasks/sounds", json={"text": "x"})
    assert response.status_code == 404 and "does not exist" in response.json()["error"]
    gw = build_gateway(str(catalogue_file), "http://127.0.0.1:9", engine="tgi", timeout=2)
    with TestClient(gw.app) as client:
        response = client.post("/tasks/sounds", json={"text": "x"})
    assert response.status_code == 502 and "cannot reach" in response.json()["error"]


def test_tgi_fields_are_refused_by_vllm(vllm) -> None:
    """Why the engine matters: TGI's base name and regex grammar are 4xx on vLLM."""
    _, url = vllm
    tgi_style = Upstream(url, "tgi")
    with pytest.raises(UpstreamError) as error:
        tgi_style.answer(Question("sentiment", "Classify.", "x", LABELS, 4))
    assert error.value.status == 400 and "response_format" in error.value.message
    with pytest.raises(UpstreamError) as error:
        tgi_style.answer(Question(None, "Repeat.", "x", None, 4))
    assert error.value.status == 404 and "`tgi`" in error.value.message


def test_metrics_count_requests_errors_and_latency_per_task(gateway) -> None:
    client, _ = gateway
    client.post("/tasks/sentiment", json={"text": "a"})
    client.post("/tasks/sentiment", json={"text": "b"})
    client.post("/tasks/nope", json={"text": "c"})
    client.post("/tasks/sounds", json={})
    text = client.get("/metrics").text
    assert 'mtd_gateway_requests_total{route="tasks",task="sentiment"} 2.0' in text
    assert 'mtd_gateway_errors_total{route="tasks",status="404",task="__unknown__"} 1.0' in text
    assert 'mtd_gateway_errors_total{route="tasks",status="422",task="sounds"} 1.0' in text
    assert 'mtd_gateway_request_duration_seconds_count{route="tasks",task="sentiment"} 2.0' in text


def test_missing_catalogue_is_unhealthy_until_written(tmp_path: Path, vllm) -> None:
    _, url = vllm
    path = tmp_path / "catalogue.json"
    gw = build_gateway(str(path), url, engine="vllm")
    with TestClient(gw.app) as client:
        assert client.get("/health").status_code == 503
        assert client.post("/tasks/sounds", json={"text": "x"}).status_code == 503
        write_catalogue(path, catalogue_doc())
        assert client.get("/health").json() == {"status": "ok", "tasks": 3}


def test_gateway_needs_no_torch() -> None:
    assert heavy_imports("mtd_operator.gateway.app", "mtd_operator.client") == []


def test_detects_the_engine(vllm) -> None:
    standin, url = vllm
    upstream = Upstream(url)
    assert upstream.engine == "vllm" and upstream.base_model == BASE_MODEL
    with pytest.raises(ValueError, match="allowed values are tgi, vllm"):
        Upstream(url, "triton")  # type: ignore[arg-type]
    assert httpx.get(url + "/info").status_code == 404
    assert isinstance(standin, VllmStandIn)


def test_client_and_mtd_predict_through_the_gateway_and_straight_to_vllm(
    catalogue_file: Path, vllm, capsys
) -> None:
    from mtd_operator.cli import main
    from mtd_operator.client import MultiTaskClient, UnknownTaskError

    standin, url = vllm
    gw = build_gateway(str(catalogue_file), url, engine="vllm")
    with serve_app(gw.app) as gateway_url:
        with MultiTaskClient(gateway_url) as client:
            assert client.via_gateway and sorted(client.tasks) == ["echo", "sentiment", "sounds"]
            through = client.predict("sentiment", "the day was awful")
            with pytest.raises(UnknownTaskError, match="known tasks: echo, sentiment, sounds"):
                client.predict("nope", "x")
        assert main(["predict", "--url", gateway_url, "--task", "sounds", "-o", "json", "hi"]) == 0
        assert '"adapter": "sounds"' in capsys.readouterr().out
    # Straight to vLLM (no gateway): the same upstream code, the catalogue given.
    with MultiTaskClient(url, catalogue_doc()) as client:
        assert not client.via_gateway and client.upstream.engine == "vllm"
        direct = client.predict("sentiment", "the day was awful")
        echo = client.predict("echo", "hello")
    assert direct == through and direct.output in LABELS
    assert echo.adapter is None and standin.requests[-1]["model"] == BASE_MODEL


def test_mtd_gateway_command(catalogue_file: Path, vllm) -> None:
    """`mtd gateway --upstream URL --catalogue FILE --port P` as its own process."""
    import time

    from tests.support.net import free_port

    _, url = vllm
    port = free_port()
    command = [sys.executable, "-m", "mtd_operator.cli", "gateway", "--upstream", url]
    command += ["--catalogue", str(catalogue_file), "--port", str(port)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.post(
                    f"http://127.0.0.1:{port}/tasks/sentiment", json={"text": "good"}, timeout=10
                )
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert answer.status_code == 200 and answer.json()["output"] in LABELS
    finally:
        process.terminate()
        process.wait(timeout=15)
    missing = subprocess.run(
        [sys.executable, "-m", "mtd_operator.cli", "gateway", "--upstream", url,
         "--catalogue", "/nonexistent.json"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert missing.returncode == 2 and "--catalogue /nonexistent.json" in missing.stderr


def test_an_engine_answer_of_unexpected_shape_is_a_502(catalogue_file: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(_):
        return JSONResponse({"choices": [{"message": None}]})

    broken = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    with serve_app(broken) as url:
        gw = build_gateway(str(catalogue_file), url, engine="vllm", base_model="b")
        with TestClient(gw.app) as client:
            sounds = client.post("/tasks/sounds", json={"text": "x"})
            sentiment = client.post("/tasks/sentiment", json={"text": "x"})
    assert sounds.status_code == 502 and "unexpected shape" in sounds.json()["error"]
    assert sentiment.status_code == 502
