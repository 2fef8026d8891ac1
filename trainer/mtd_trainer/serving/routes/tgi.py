"""TGI's generation routes: /generate, /generate_stream and the compatibility route /."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ..access import AdapterGate, Gate
from ..engine import EngineError, Generation, Sampling
from ..schemas import GenerateRequest, check_ranges, generate_sampling
from ..work import SSE_HEADERS, generate_whole, sse, stream_tokens, token_json

router = APIRouter()


def _prepare(gate: Gate, body: GenerateRequest) -> tuple[list[int], str | None, Sampling]:
    """Adapter, checked parameters and prompt ids: every 422 before any generation."""
    p = body.parameters
    adapter = gate.resolve(p.adapter_id)
    check_ranges(
        temperature=p.temperature,
        top_p=p.top_p,
        top_k=p.top_k,
        typical_p=p.typical_p,
        repetition_penalty=p.repetition_penalty,
        max_new_tokens=p.max_new_tokens,
        seed=p.seed,
        stop=p.stop,
        top_n_tokens=p.top_n_tokens,
        truncate=p.truncate,
        frequency_penalty=p.frequency_penalty,
    )
    if not body.inputs:
        raise EngineError("Input validation error: `inputs` cannot be empty")
    engine = gate.serving.engine
    ids, budget = engine.check_length(engine.encode(body.inputs), p.max_new_tokens, p.truncate)
    return ids, adapter, generate_sampling(p, budget)


def _details(generation: Generation) -> dict[str, Any]:
    body: dict[str, Any] = {
        "finish_reason": generation.finish_reason,
        "generated_tokens": len(generation.tokens),
        "seed": generation.seed,
        "prefill": [{"id": t.id, "text": t.text, "logprob": t.logprob} for t in generation.prefill],
        "tokens": [token_json(t) for t in generation.tokens],
    }
    if any(generation.top_tokens):
        body["top_tokens"] = [[token_json(t) for t in top] for top in generation.top_tokens]
    return body


def _stream_details(result: Generation | None, wanted: bool) -> dict[str, Any] | None:
    if result is None or not wanted:
        return None
    return {
        "finish_reason": result.finish_reason,
        "generated_tokens": len(result.tokens),
        "seed": result.seed,
        "input_length": result.input_length,
    }


async def _generate_json(request: Request, gate: Gate, body: GenerateRequest) -> dict[str, Any]:
    ids, adapter, params = await run_in_threadpool(_prepare, gate, body)
    generation = await generate_whole(request, gate.serving.engine, ids, adapter, params)
    gate.count_tokens(len(generation.tokens))
    prefix = body.inputs if body.parameters.return_full_text else ""
    result: dict[str, Any] = {"generated_text": prefix + generation.text}
    if body.parameters.details:
        result["details"] = _details(generation)
    return result


async def _generate_events(gate: Gate, body: GenerateRequest) -> StreamingResponse:
    ids, adapter, params = await run_in_threadpool(_prepare, gate, body)
    prefix = body.inputs if body.parameters.return_full_text else ""

    async def events() -> AsyncIterator[bytes]:
        index = 0
        steps = stream_tokens(gate.serving.engine, ids, adapter, params)
        try:
            async for token, top, result in steps:
                index += 1
                event: dict[str, Any] = {"index": index, "token": token_json(token)}
                if top:
                    event["top_tokens"] = [token_json(t) for t in top]
                event["generated_text"] = prefix + result.text if result else None
                event["details"] = _stream_details(result, body.parameters.details)
                if result:
                    gate.count_tokens(len(result.tokens))
                yield sse(event)
        except Exception as exc:
            yield sse({"error": str(exc), "error_type": "generation"})

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.post("/generate")
async def generate(request: Request, gate: AdapterGate, body: GenerateRequest) -> dict[str, Any]:
    return await _generate_json(request, gate, body)


@router.post("/generate_stream")
async def generate_stream(gate: AdapterGate, body: GenerateRequest) -> StreamingResponse:
    return await _generate_events(gate, body)


@router.post("/", response_model=None)
async def compat_generate(
    request: Request, gate: AdapterGate, body: GenerateRequest
) -> list[dict[str, Any]] | StreamingResponse:
    """TGI's route for clients that post to the base URL (both Python clients do)."""
    if body.stream:
        return await _generate_events(gate, body)
    return [await _generate_json(request, gate, body)]
