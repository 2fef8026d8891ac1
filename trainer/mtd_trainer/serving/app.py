"""HTTP routes: the part of TGI's API that clients use, plus /classify and /catalogue.

Handlers stay thin: parse, resolve the adapter, then tokenise, validate lengths and run
the engine in a worker thread, so the event loop keeps answering /health and /metrics
while a long request runs; a generation stops when its client leaves. Requests beyond
the `Limits` (body size, labels, concurrency) are refused with a 4xx naming the limit,
and POST /adapters needs the admin token. Every error is a JSON body
{"error", "error_type"} as TGI sends, so both TGI clients raise their typed errors with
the server's message.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future
from importlib import metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .catalogue import Catalogue, CatalogueError, load_catalogue
from .engine import Engine, EngineError, Generation, Sampling, Token
from .grammar import GrammarError
from .limits import BodyLimit, ConcurrencyLimit, Limits, authorized, load_or_create_token
from .metrics import Metrics, ObserveRequests
from .schemas import (
    AdaptersRequest,
    ChatRequest,
    ClassifyRequest,
    GenerateRequest,
    chat_sampling,
    check_ranges,
    generate_sampling,
)

ROUTER = "mtd-dev-server"
BASE_LABEL = "__base__"  # the metrics label for requests on the base model (peft's name)
UNKNOWN_LABEL = "__unknown__"  # unresolved adapter names: keeps label cardinality bounded
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
#: Routes that run the model: what max_concurrent_requests counts.
WORK_ROUTES = frozenset({"/", "/generate", "/generate_stream", "/v1/chat/completions", "/classify"})
#: How often a running non-streaming request checks that its client is still there.
DISCONNECT_POLL_S = 0.25


def _version() -> str:
    try:
        return metadata.version("multitask-operator")
    except metadata.PackageNotFoundError:
        return "dev"


def _error(status: int, message: str, error_type: str = "validation") -> JSONResponse:
    # Messages may quote the request (a field name, say), lone surrogates included: escape
    # those, or the response itself could not be encoded and the client would get a 500.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


def _sse(payload: Any) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _token_json(token: Token) -> dict[str, Any]:
    return {"id": token.id, "text": token.text, "logprob": token.logprob, "special": token.special}


def build_app(
    engine: Engine,
    catalogue: str | Path | Mapping[str, Any] | None = None,
    *,
    limits: Limits | None = None,
    admin_token: str | None = None,
) -> FastAPI:
    """The FastAPI application serving `engine`; the catalogue is checked against it.

    Without `admin_token` the adapter set cannot be changed over HTTP (POST /adapters
    answers 401 to everyone)."""
    tasks: Catalogue | None = (
        load_catalogue(catalogue, engine.adapters) if catalogue is not None else None
    )
    limits = limits or Limits()
    metrics = Metrics()
    version = _version()
    app = FastAPI(title="multitask-operator development server", version=version)
    # Added last, runs first: the body limit guards everything, including the metrics.
    app.add_middleware(ObserveRequests, metrics=metrics, default_label=BASE_LABEL)
    app.add_middleware(ConcurrencyLimit, limit=limits.max_concurrent_requests, routes=WORK_ROUTES)
    app.add_middleware(BodyLimit, limit=limits.max_body_bytes)

    # -- errors and metrics -------------------------------------------------------------

    @app.exception_handler(EngineError)
    @app.exception_handler(GrammarError)
    async def _engine_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            return _error(400, "the request body is not valid JSON")
        parts = []
        for error in errors:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            parts.append(f"{where}: {error.get('msg')}")
        return _error(422, "Input validation error: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "http")

    def resolve(request: Request, name: str | None) -> str | None:
        """The engine's adapter for `name`; metrics use the name the user gave (the
        engine's internal names change with every reload)."""
        request.state.adapter = UNKNOWN_LABEL
        adapter = engine.resolve_adapter(name)
        request.state.adapter = name if adapter else BASE_LABEL
        return adapter

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

    def count_tokens(request: Request, generation: Generation) -> None:
        metrics.add_generated_tokens(request.state.adapter, len(generation.tokens))

    async def stream(
        request: Request, ids: list[int], adapter: str | None, params: Sampling
    ) -> AsyncIterator[tuple[Token, list[Token], Generation | None]]:
        """Tokens from a generation running in its own thread; stops it if the client leaves."""
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
                    count_tokens(request, item[2])
                    return
        finally:
            cancelled.set()

    # -- TGI: /generate, /generate_stream, / ---------------------------------------------

    def prepare(request: Request, body: GenerateRequest) -> tuple[list[int], str | None, Sampling]:
        p = body.parameters
        adapter = resolve(request, p.adapter_id)
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
        ids, budget = engine.check_length(engine.encode(body.inputs), p.max_new_tokens, p.truncate)
        return ids, adapter, generate_sampling(p, budget)

    def details_json(generation: Generation) -> dict[str, Any]:
        body: dict[str, Any] = {
            "finish_reason": generation.finish_reason,
            "generated_tokens": len(generation.tokens),
            "seed": generation.seed,
            "prefill": [
                {"id": t.id, "text": t.text, "logprob": t.logprob} for t in generation.prefill
            ],
            "tokens": [_token_json(t) for t in generation.tokens],
        }
        if any(generation.top_tokens):
            body["top_tokens"] = [[_token_json(t) for t in top] for top in generation.top_tokens]
        return body

    async def generate_json(request: Request, body: GenerateRequest) -> dict[str, Any]:
        ids, adapter, params = await run_in_threadpool(prepare, request, body)
        generation = await until_done_or_gone(
            request, lambda cancelled: engine.generate(ids, adapter, params, None, cancelled)
        )
        count_tokens(request, generation)
        prefix = body.inputs if body.parameters.return_full_text else ""
        result: dict[str, Any] = {"generated_text": prefix + generation.text}
        if body.parameters.details:
            result["details"] = details_json(generation)
        return result

    async def generate_events(request: Request, body: GenerateRequest) -> StreamingResponse:
        ids, adapter, params = await run_in_threadpool(prepare, request, body)
        prefix = body.inputs if body.parameters.return_full_text else ""

        async def events() -> AsyncIterator[bytes]:
            index = 0
            try:
                async for token, top, result in stream(request, ids, adapter, params):
                    index += 1
                    event: dict[str, Any] = {"index": index, "token": _token_json(token)}
                    if top:
                        event["top_tokens"] = [_token_json(t) for t in top]
                    event["generated_text"] = prefix + result.text if result else None
                    event["details"] = (
                        {
                            "finish_reason": result.finish_reason,
                            "generated_tokens": len(result.tokens),
                            "seed": result.seed,
                            "input_length": result.input_length,
                        }
                        if result and body.parameters.details
                        else None
                    )
                    yield _sse(event)
            except Exception as exc:
                yield _sse({"error": str(exc), "error_type": "generation"})

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    @app.post("/generate")
    async def generate(request: Request, body: GenerateRequest) -> dict[str, Any]:
        return await generate_json(request, body)

    @app.post("/generate_stream")
    async def generate_stream(request: Request, body: GenerateRequest) -> StreamingResponse:
        return await generate_events(request, body)

    @app.post("/", response_model=None)
    async def compat_generate(
        request: Request, body: GenerateRequest
    ) -> list[dict[str, Any]] | StreamingResponse:
        """TGI's route for clients that post to the base URL (both Python clients do)."""
        if body.stream:
            return await generate_events(request, body)
        return [await generate_json(request, body)]

    # -- OpenAI: /v1/chat/completions, /v1/models -----------------------------------------

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(
        request: Request, body: ChatRequest
    ) -> dict[str, Any] | StreamingResponse:
        adapter = resolve(request, body.model)
        wanted = body.max_completion_tokens or body.max_tokens
        check_ranges(max_new_tokens=wanted)

        def tokenise() -> tuple[list[int], int]:
            prompt = engine.chat_prompt([m.as_template_input() for m in body.messages])
            return engine.check_length(engine.encode(prompt, add_special_tokens=False), wanted)

        ids, budget = await run_in_threadpool(tokenise)
        params = chat_sampling(body, budget)
        model = body.model if adapter else engine.model_id
        created = int(time.time())
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        fingerprint = f"{version}-{ROUTER}"

        def logprob_entry(token: Token, top: list[Token]) -> dict[str, Any]:
            return {
                "token": token.text,
                "logprob": token.logprob,
                "top_logprobs": [{"token": t.text, "logprob": t.logprob} for t in top],
            }

        def finish(generation: Generation) -> str:
            return "length" if generation.finish_reason == "length" else "stop"

        def usage(generation: Generation) -> dict[str, int]:
            return {
                "prompt_tokens": len(ids),
                "completion_tokens": len(generation.tokens),
                "total_tokens": len(ids) + len(generation.tokens),
            }

        if not body.stream:
            generation = await until_done_or_gone(
                request, lambda cancelled: engine.generate(ids, adapter, params, None, cancelled)
            )
            count_tokens(request, generation)
            logprobs = None
            if body.logprobs:
                logprobs = {
                    "content": [
                        logprob_entry(t, top)
                        for t, top in zip(generation.tokens, generation.top_tokens, strict=True)
                        if not t.special
                    ]
                }
            return {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "system_fingerprint": fingerprint,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": generation.text},
                        "logprobs": logprobs,
                        "finish_reason": finish(generation),
                    }
                ],
                "usage": usage(generation),
            }

        def chunk(
            delta: dict[str, Any], logprobs: Any, reason: str | None, use: Any = None
        ) -> bytes:
            choices = [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": reason}]
            return _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "system_fingerprint": fingerprint,
                    "choices": choices if delta is not None else [],
                    "usage": use,
                }
            )

        async def events() -> AsyncIterator[bytes]:
            try:
                async for token, top, result in stream(request, ids, adapter, params):
                    text = "" if token.special else token.text
                    logprobs = (
                        {"content": [logprob_entry(token, top)]}
                        if body.logprobs and not token.special
                        else None
                    )
                    reason = finish(result) if result else None
                    yield chunk({"role": "assistant", "content": text}, logprobs, reason)
                    if result and body.stream_options and body.stream_options.include_usage:
                        yield chunk(None, None, None, usage(result))  # type: ignore[arg-type]
            except Exception as exc:
                yield _sse({"error": str(exc), "error_type": "generation"})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": ROUTER}
                for name in (engine.model_id, *engine.adapters)
            ],
        }

    # -- our extensions: /classify, /catalogue -------------------------------------------

    @app.post("/classify")
    async def classify(request: Request, body: ClassifyRequest) -> dict[str, Any]:
        """The probability of each label as the whole answer: exact, one forward pass."""
        adapter = resolve(request, body.adapter_id)
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

        def score(cancelled: threading.Event) -> list[float]:
            if body.messages is not None:
                prompt = engine.chat_prompt([m.as_template_input() for m in body.messages])
                ids = engine.encode(prompt, add_special_tokens=False)
            else:
                ids = engine.encode(body.inputs or "")
            ids, _ = engine.check_length(ids, None)
            return engine.score_labels(ids, body.labels, adapter, limits.label_batch, cancelled)

        logprobs = await until_done_or_gone(request, score)
        top = max(logprobs)
        weights = [math.exp(lp - top) for lp in logprobs]
        total = sum(weights)
        scores = [
            {"label": label, "logprob": lp, "probability": w / total}
            for label, lp, w in zip(body.labels, logprobs, weights, strict=True)
        ]
        best = max(scores, key=lambda s: s["probability"])
        return {"label": best["label"], "probability": best["probability"], "scores": scores}

    @app.post("/adapters", response_model=None)
    async def reload_adapters(request: Request) -> dict[str, Any] | JSONResponse:
        """Our extension: swap the adapter set (and catalogue) in place, like a rollout
        without a restart. Requests keep being served while the new weights load. An
        admin action: it needs the admin token (`Authorization: Bearer TOKEN`)."""
        nonlocal tasks
        if not authorized(request.headers.get("authorization"), admin_token):
            return JSONResponse(
                {
                    "error": "changing the adapters needs the admin token: "
                    "Authorization: Bearer TOKEN (see --admin-token-file)",
                    "error_type": "authentication",
                },
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        # Parsed here, after the token check: an anonymous caller learns nothing more.
        try:
            body = AdaptersRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            raise RequestValidationError(exc.errors()) from None
        adapters = dict(body.adapters)
        new_tasks = tasks
        if body.catalogue is not None:
            try:
                new_tasks = load_catalogue(body.catalogue, adapters.keys())
            except CatalogueError as exc:
                raise EngineError(str(exc)) from None
        names = await asyncio.to_thread(engine.replace_adapters, adapters)
        tasks = new_tasks
        return {"adapters": list(names)}

    @app.get("/catalogue")
    async def get_catalogue() -> dict[str, Any]:
        return tasks.model_dump() if tasks else {"tasks": []}

    # -- operations ------------------------------------------------------------------------

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "model_id": engine.model_id,
            "model_sha": None,
            "model_dtype": engine.dtype,
            "model_device_type": engine.device_type,
            "model_pipeline_tag": "text-generation",
            "max_best_of": 1,
            "max_stop_sequences": 4,
            "max_input_tokens": engine.max_input_tokens,
            "max_total_tokens": engine.max_total_tokens,
            "validation_workers": 1,
            "max_client_batch_size": 1,
            "router": ROUTER,
            "version": version,
            "sha": None,
            "docker_label": None,
            "adapters": list(engine.adapters),
            "catalogue": tasks.model_dump() if tasks else None,
            "extensions": ["/classify", "/catalogue", "/adapters"],
        }

    @app.get("/health")
    async def health() -> Response:
        return Response(status_code=200)

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    return app


def serve(
    base_model: str | Path,
    adapters: Mapping[str, str | Path] | None = None,
    *,
    catalogue: str | Path | Mapping[str, Any] | None = None,
    host: str = "127.0.0.1",
    port: int = 8080,
    model_id: str | None = None,
    max_input_tokens: int | None = None,
    max_total_tokens: int | None = None,
    log_level: str = "info",
    limits: Limits | None = None,
    admin_token_file: str | Path | None = None,
) -> None:
    """Load the model and adapters, then serve until interrupted (what `mtd serve` calls).

    The admin token is read from `admin_token_file`, or generated and written there
    (mode 0600) if the file does not exist; without a file, adapters cannot be changed."""
    import uvicorn

    if catalogue is not None:  # fail before the (slow) model load, not after it
        load_catalogue(catalogue, (adapters or {}).keys())
    token = load_or_create_token(Path(admin_token_file)) if admin_token_file else None
    engine = Engine(
        base_model,
        adapters,
        model_id=model_id,
        max_input_tokens=max_input_tokens,
        max_total_tokens=max_total_tokens,
    )
    app = build_app(engine, catalogue, limits=limits, admin_token=token)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
