"""Running the model off the event loop, and stopping it when the client leaves.

The engine runs in a worker thread, so the loop keeps answering /health and /metrics
while a long request works; a `threading.Event` tells the engine to stop at its next
token once the client has disconnected (polled every `DISCONNECT_POLL_S` for plain
requests, noticed at once by a stream's consumer).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Any

from fastapi import Request

from .engine import Engine, Generation, Sampling, Token

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: How often a running non-streaming request checks that its client is still there.
DISCONNECT_POLL_S = 0.25

#: One streamed step: the token, its top alternatives, and the result on the last step.
Step = tuple[Token, list[Token], Generation | None]


def sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def token_json(token: Token) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


async def until_done_or_gone(request: Request, work: Callable[[threading.Event], Any]) -> Any:
    """Run `work(cancelled)` in a worker thread; set `cancelled` if the client leaves,
    so an abandoned generation stops at its next token instead of running on."""
    cancelled = threading.Event()
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work(cancelled))
        except BaseException as exc:  # handed to the awaiting request
            future.set_exception(exc)

    threading.Thread(target=run, name="request", daemon=True).start()
    waiting = asyncio.wrap_future(future)
    try:
        while True:
            done, _ = await asyncio.wait({waiting}, timeout=DISCONNECT_POLL_S)
            if done:
                return waiting.result()
            if await request.is_disconnected():
                cancelled.set()
                return await waiting
    finally:
        cancelled.set()


async def generate_whole(
    request: Request, engine: Engine, ids: list[int], adapter: str | None, params: Sampling
) -> Generation:
    """One whole generation, stopped early if the client leaves."""
    generation: Generation = await until_done_or_gone(
        request, lambda cancelled: engine.generate(ids, adapter, params, None, cancelled)
    )
    return generation


async def stream_tokens(
    engine: Engine, ids: list[int], adapter: str | None, params: Sampling
) -> AsyncIterator[Step]:
    """Tokens from a generation running in its own thread; stops it if the consumer stops
    (a client that leaves closes the response's iterator)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    cancelled = threading.Event()

    def emit(token: Token, top: list[Token], result: Generation | None) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (token, top, result))

    def run() -> None:
        try:
            engine.generate(ids, adapter, params, emit, cancelled)
        except Exception as exc:  # surfaced to the client as an error event
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    threading.Thread(target=run, name="generate", daemon=True).start()
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
            if item[2] is not None:
                return
    finally:
        cancelled.set()
