"""OpenAI's routes: /v1/chat/completions (plain and streamed) and /v1/models."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..access import AdapterGate
from ..engine import Generation, Token
from ..schemas import ChatRequest, chat_sampling, check_ranges
from ..state import ROUTER, Serving
from ..work import SSE_HEADERS, Step, generate_whole, sse, stream_tokens

router = APIRouter()


def _logprob_entry(token: Token, top: list[Token]) -> dict[str, Any]:
    return {
        "token": token.text,
        "logprob": token.logprob,
        "top_logprobs": [{"token": t.text, "logprob": t.logprob} for t in top],
    }


def _finish(generation: Generation) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


@dataclass(frozen=True)
class Completion:
    """The fields every answer (or chunk) of one chat completion repeats."""

    id: str
    created: int
    model: str
    fingerprint: str
    prompt_tokens: int

    def usage(self, generation: Generation) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": len(generation.tokens),
            "total_tokens": self.prompt_tokens + len(generation.tokens),
        }

    def answer(self, generation: Generation, logprobs: bool) -> dict[str, Any]:
        content = None
        if logprobs:
            pairs = zip(generation.tokens, generation.top_tokens, strict=True)
            content = {"content": [_logprob_entry(t, top) for t, top in pairs if not t.special]}
        message = {"role": "assistant", "content": generation.text}
        choice = {"index": 0, "message": message, "logprobs": content}
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.fingerprint,
            "choices": [{**choice, "finish_reason": _finish(generation)}],
            "usage": self.usage(generation),
        }

    def chunk(
        self, delta: dict[str, Any] | None, logprobs: Any, reason: str | None, use: Any = None
    ) -> bytes:
        choices = [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]
        return sse(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": self.fingerprint,
                "choices": choices if delta is not None else [],
                "usage": use,
            }
        )


async def _events(
    steps: AsyncIterator[Step],
    completion: Completion,
    body: ChatRequest,
    count_tokens: Callable[[int], None],
) -> AsyncIterator[bytes]:
    """The chunks of a streamed completion, then [DONE]; an error becomes an error event."""
    usage = bool(body.stream_options and body.stream_options.include_usage)
    try:
        async for token, top, result in steps:
            text = "" if token.special else token.text
            logprobs = None
            if body.logprobs and not token.special:
                logprobs = {"content": [_logprob_entry(token, top)]}
            reason = _finish(result) if result else None
            if result:
                count_tokens(len(result.tokens))
            yield completion.chunk({"role": "assistant", "content": text}, logprobs, reason)
            if result and usage:
                yield completion.chunk(None, None, None, completion.usage(result))
    except Exception as exc:
        yield sse({"error": str(exc), "error_type": "generation"})
    yield b"data: [DONE]\n\n"


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(
    request: Request, gate: AdapterGate, body: ChatRequest
) -> dict[str, Any] | StreamingResponse:
    engine = gate.serving.engine
    adapter = gate.resolve(body.model)
    wanted = body.max_completion_tokens or body.max_tokens
    check_ranges(max_new_tokens=wanted)

    def tokenise() -> tuple[list[int], int]:
        prompt = engine.chat_prompt([m.as_template_input() for m in body.messages])
        return engine.check_length(engine.encode(prompt, add_special_tokens=False), wanted)

    ids, budget = await run_in_threadpool(tokenise)
    params = chat_sampling(body, budget)
    completion = Completion(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model if adapter and body.model else engine.model_id,
        fingerprint=f"{gate.serving.version}-{ROUTER}",
        prompt_tokens=len(ids),
    )
    if not body.stream:
        generation = await generate_whole(request, engine, ids, adapter, params)
        gate.count_tokens(len(generation.tokens))
        return completion.answer(generation, bool(body.logprobs))
    steps = stream_tokens(engine, ids, adapter, params)
    events = _events(steps, completion, body, gate.count_tokens)
    return StreamingResponse(events, media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/v1/models")
async def models(serving: Serving) -> dict[str, Any]:
    created = int(time.time())
    engine = serving.engine
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": ROUTER}
            for name in (engine.model_id, *engine.adapters)
        ],
    }
