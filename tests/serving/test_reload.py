"""Changing the adapter set while requests run: none is dropped, new weights serve after."""

from __future__ import annotations

import threading
import time

import httpx

from tests.support.models import build_adapter
from tests.support.net import serve_app

from .conftest import build_base

PROMPT = "the cat says"
TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def greedy_ids(base, adapter, tokens: int) -> list[int]:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter))
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(
            input_ids=ids, max_new_tokens=tokens, do_sample=False, eos_token_id=None, pad_token_id=0
        )
    return out[0, ids.shape[1] :].tolist()


def test_reload_during_traffic_drops_no_request(tmp_path):
    from mtd_trainer.serving import Engine, build_app

    base = build_base(tmp_path / "base")
    old = build_adapter(base, tmp_path / "old", seed=1)
    new = build_adapter(base, tmp_path / "new", seed=3)
    extra = build_adapter(base, tmp_path / "extra", seed=4)
    engine = Engine(base, {"task": old}, model_id="tiny")
    with serve_app(build_app(engine, admin_token=TOKEN)) as url:
        body = {
            "inputs": PROMPT,
            "parameters": {"adapter_id": "task", "max_new_tokens": 3, "details": True},
        }
        statuses: list[int] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    statuses.append(client.post("/generate", json=body).status_code)

        workers = [threading.Thread(target=traffic) for _ in range(4)]
        try:
            for worker in workers:
                worker.start()
            time.sleep(0.5)
            with httpx.Client(base_url=url, timeout=60, headers=ADMIN) as client:
                swap = client.post(
                    "/adapters", json={"adapters": {"task": str(new), "extra": str(extra)}}
                )
                assert swap.status_code == 200, swap.text
                assert swap.json() == {"adapters": ["task", "extra"]}
                time.sleep(0.5)
                # A second reload deletes the adapters the first one retired.
                again = client.post("/adapters", json={"adapters": {"task": str(new)}})
                assert again.status_code == 200, again.text
                time.sleep(0.5)
                stop.set()
                for worker in workers:
                    worker.join()
                assert len(statuses) > 8 and set(statuses) == {200}, statuses
                served = client.post("/generate", json=body).json()
                ids = [token["id"] for token in served["details"]["tokens"]]
                assert ids == greedy_ids(base, new, 3)
                gone = client.post(
                    "/generate", json={"inputs": PROMPT, "parameters": {"adapter_id": "extra"}}
                )
                assert gone.status_code == 422 and "unknown adapter" in gone.json()["error"]
                bad = client.post("/adapters", json={"adapters": {"task": str(tmp_path)}})
                assert bad.status_code == 422
                assert client.post("/generate", json=body).status_code == 200
        finally:
            stop.set()
