"""The engine gets exactly the prompt the trainer trained on (issue #30): the chat
template's tokens when the tokenizer has one, the contract's plain prompt through
/v1/completions when it has none, compared token by token with the real vLLM."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtd_contract.config import TaskConfig
from mtd_contract.prompts import plain_prompt
from mtd_contract.upstream import Question, Upstream
from mtd_operator.gateway.app import build_gateway
from tests.support.net import serve_app

from .conftest import BASE_MODEL, LABELS, catalogue_doc

TASKS = {
    "classification": TaskConfig(
        name="sentiment", type="classification", instruction="Classify the sentiment.",
        labels=LABELS, metric="accuracy",
    ),
    "generation": TaskConfig(
        name="sounds", type="generation", instruction="What sound does it make?",
        metric="rougeL",
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("prompt_format", ["chat", "plain"])
@pytest.mark.parametrize("kind", ["classification", "generation"])
def test_the_engine_reads_the_token_ids_the_trainer_trained_on(real_vllm, prompt_format, kind):
    from mtd_trainer.encoding import prompt_ids
    from mtd_trainer.modeling import load_tokenizer

    tokenizer = load_tokenizer(str(real_vllm.base))
    assert tokenizer.chat_template  # the tiny base has one; `plain` is a base without it
    if prompt_format == "plain":
        tokenizer.chat_template = None
    task, text = TASKS[kind], "The cow, on a rainy day: awful!"
    (trained,) = prompt_ids(tokenizer, task, [text])
    engine = real_vllm.engine
    upstream = Upstream(engine.url, "vllm", base_model=engine.model, api_key=engine.api_key())
    question = Question(None, task.instruction, text, task.labels, 4, None, prompt_format)
    path, body = upstream.request(question)
    assert path == {"chat": "/v1/chat/completions", "plain": "/v1/completions"}[prompt_format]
    out = upstream.post(path, {**body, "return_token_ids": True})  # vLLM echoes its input ids
    served = out.get("prompt_token_ids") or out["choices"][0].get("prompt_token_ids")
    assert served == trained


def test_a_plain_prompt_model_is_asked_through_completions(tmp_path: Path, vllm):
    """A catalogue whose model trained on the plain prompt (no chat template): every task
    goes to /v1/completions with that prompt, never to chat (which such a model's engine
    refuses)."""
    standin, url = vllm
    doc = {**catalogue_doc(), "promptFormat": "plain"}
    catalogue = tmp_path / "catalogue.json"
    catalogue.write_text(json.dumps(doc))
    gateway = build_gateway(str(catalogue), url, engine="vllm", base_model=BASE_MODEL)
    import httpx

    with serve_app(gateway.app) as gateway_url:
        label = httpx.post(f"{gateway_url}/tasks/sentiment", json={"text": "awful"}).json()
        chat = httpx.post(
            f"{gateway_url}/v1/chat/completions",
            json={"model": "sounds", "messages": [{"role": "user", "content": "cow"}]},
        ).json()
    assert label["output"] in LABELS
    assert chat["choices"][0]["message"]["content"].startswith("sounds says")
    sent = standin.requests
    assert all("prompt" in r and "messages" not in r for r in sent)
    assert sent[0]["prompt"] == plain_prompt("Classify the sentiment.", "awful", LABELS)
    assert sent[1]["prompt"] == plain_prompt("What sound does it make?", "cow")
