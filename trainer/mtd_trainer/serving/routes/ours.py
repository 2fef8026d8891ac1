"""Our extensions: /classify (label scoring), /catalogue, and POST /adapters (admin)."""

from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ..access import AdapterGate, require_admin
from ..catalogue import CatalogueError, load_catalogue
from ..engine import EngineError
from ..limits import Limits
from ..schemas import AdaptersRequest, ClassifyRequest
from ..state import Serving
from ..work import until_done_or_gone

router = APIRouter()


def _check_labels(body: ClassifyRequest, limits: Limits) -> None:
    if (body.inputs is None) == (body.messages is None):
        raise EngineError("give exactly one of `inputs` (a prompt) and `messages` (a chat)")
    if len(body.labels) > limits.max_labels:
        raise EngineError(
            f"`labels` has {len(body.labels)} entries; this server scores at most "
            f"max_labels ({limits.max_labels}) per request"
        )
    longest = max(len(label) for label in body.labels)
    if longest > limits.max_label_chars:
        raise EngineError(
            f"a label has {longest} characters; this server accepts at most "
            f"max_label_chars ({limits.max_label_chars})"
        )
    if len(set(body.labels)) != len(body.labels) or not all(body.labels):
        raise EngineError(f"`labels` must be distinct and non-empty. Given: {body.labels}")


def _answer(labels: list[str], logprobs: list[float]) -> dict[str, Any]:
    """Probabilities as the softmax over the labels; the answer is the most likely one."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    total = sum(weights)
    scores = [
        {"label": label, "logprob": lp, "probability": w / total}
        for label, lp, w in zip(labels, logprobs, weights, strict=True)
    ]
    best = max(scores, key=lambda s: s["probability"])
    return {"label": best["label"], "probability": best["probability"], "scores": scores}


@router.post("/classify")
async def classify(request: Request, gate: AdapterGate, body: ClassifyRequest) -> dict[str, Any]:
    """The probability of each label as the whole answer: exact, one forward pass."""
    adapter = gate.resolve(body.adapter_id)
    engine, limits = gate.serving.engine, gate.serving.limits
    _check_labels(body, limits)

    def score(cancelled: threading.Event) -> list[float]:
        if body.messages is not None:
            prompt = engine.chat_prompt([m.as_template_input() for m in body.messages])
            ids = engine.encode(prompt, add_special_tokens=False)
        else:
            ids = engine.encode(body.inputs or "")
        ids, _ = engine.check_length(ids, None)
        return engine.score_labels(ids, body.labels, adapter, limits.label_batch, cancelled)

    return _answer(body.labels, await until_done_or_gone(request, score))


@router.post("/adapters", dependencies=[Depends(require_admin)])
async def reload_adapters(request: Request, serving: Serving) -> dict[str, Any]:
    """Swap the adapter set (and catalogue) in place, like a rollout without a restart.
    Requests keep being served while the new weights load. An admin action: the
    `require_admin` dependency checks the token before the body is read."""
    try:
        body = AdaptersRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    adapters = dict(body.adapters)
    new_tasks = serving.tasks
    if body.catalogue is not None:
        try:
            new_tasks = load_catalogue(body.catalogue, adapters.keys())
        except CatalogueError as exc:
            raise EngineError(str(exc)) from None
    names = await asyncio.to_thread(serving.engine.replace_adapters, adapters)
    serving.tasks = new_tasks
    return {"adapters": list(names)}


@router.get("/catalogue")
async def get_catalogue(serving: Serving) -> dict[str, Any]:
    return serving.catalogue_json() or {"tasks": []}
