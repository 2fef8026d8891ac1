"""The gateway's HTTP API (Starlette): tasks by name, OpenAI routes with `model` = task.

* `GET /tasks`: the catalogue (each task's type, labels, metric, verdict and adapter);
* `POST /tasks/{task}` with `{"text"}`: `{"task", "output", "score", "adapter"}`, where
  the output of a classification task is always one of its labels;
* `POST /v1/chat/completions` (the last user message is the input) and
  `POST /v1/completions` (`prompt`), with `model` naming the task;
* `GET /v1/models` (the tasks), `GET /health` (200 once a catalogue is loaded) and
  `GET /metrics` (Prometheus: requests, errors and latency per task and route).

An unknown task is a 404 naming the known tasks, on every route. Errors are TGI's shape
(`{"error": message, "error_type": kind}`), as the rest of the project's servers answer.
Upstream calls are blocking httpx calls, run in Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mtd_contract.limits import (
    HEADER_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_CONCURRENT_REQUESTS,
    MAX_NEW_TOKENS,
    MAX_REQUEST_TEXT_CHARS,
    REQUEST_TIMEOUT_S,
)
from mtd_contract.upstream import Answer, Upstream, UpstreamError

from ..core.catalogue import Catalogue, CatalogueTask
from .source import CatalogueSource, CatalogueUnavailable

log = logging.getLogger(__name__)
DEFAULT_MAX_NEW_TOKENS = 64
MAX_TEXT_CHARS = MAX_REQUEST_TEXT_CHARS
# How much of a client's value an error message quotes back.
QUOTED_CHARS = 100
UNKNOWN_TASK = "__unknown__"


class GatewayError(Exception):
    """An answer other than 200: HTTP status, message and TGI-style error type."""

    def __init__(self, status: int, message: str, kind: str = "validation") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind


class Metrics:
    """Per task and route: requests, errors (by status) and latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mtd_gateway_requests",
            "Requests by task and route (task __unknown__: not in the catalogue).",
            ["task", "route"],
            registry=self.registry,
        )
        self.errors = Counter(
            "mtd_gateway_errors",
            "Requests answered with an error, by task, route and HTTP status.",
            ["task", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mtd_gateway_request_duration_seconds",
            "Time to answer, by task and route.",
            ["task", "route"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )


def _error(exc: GatewayError) -> JSONResponse:
    return JSONResponse({"error": exc.message, "error_type": exc.kind}, status_code=exc.status)


async def _body(request: Request) -> bytes:
    """The request body, refused with 413 past MAX_BODY_BYTES (by its Content-Length, or
    while it streams in) instead of buffering whatever a client sends."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise GatewayError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise GatewayError(413, f"the body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_object(request: Request) -> dict[str, Any]:
    raw = await _body(request)
    try:
        body = json.loads(raw)
    except RecursionError:
        raise GatewayError(400, "the body nests JSON too deeply") from None
    except ValueError:
        raise GatewayError(400, "the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise GatewayError(422, "the body must be a JSON object")
    return body


def _quoted(value: Any) -> str:
    """A client's value in a message: its repr, cut to QUOTED_CHARS characters."""
    text = repr(value)
    return text if len(text) <= QUOTED_CHARS else f"{text[:QUOTED_CHARS]}... ({len(text)} chars)"


def _text_field(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if isinstance(value, list) and len(value) == 1:  # OpenAI's prompt may be a list
        value = value[0]
    if not isinstance(value, str) or not value.strip():
        raise GatewayError(422, f"{field}: required, a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise GatewayError(422, f"{field}: at most {MAX_TEXT_CHARS} characters")
    return value


def _max_tokens(body: dict[str, Any], default: int, *fields: str) -> int:
    """The first of `fields` that is set (OpenAI has two names for it), else `default`."""
    for field in fields:
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NEW_TOKENS:
            raise GatewayError(422, f"{field}: an integer from 1 to {MAX_NEW_TOKENS}")
        return value
    return default


def _last_user_text(body: dict[str, Any]) -> str:
    chat = body.get("messages")
    if not isinstance(chat, list) or not chat:
        raise GatewayError(422, "messages: required, a non-empty list of messages")
    users = [m for m in chat if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise GatewayError(422, "messages: no message with role user (the task's input)")
    content = users[-1].get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(p for p in parts if isinstance(p, str))
    return _text_field({"messages[].content": content}, "messages[].content")


def _no_stream(body: dict[str, Any]) -> None:
    if body.get("stream"):
        raise GatewayError(422, "stream: not supported by the gateway; allowed: false")


class Gateway:
    """The catalogue, the engine, the metrics; `app` serves them."""

    def __init__(
        self,
        source: CatalogueSource,
        upstream: Upstream,
        default_max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    ) -> None:
        self.source = source
        self.upstream = upstream
        self.default_max_new_tokens = default_max_new_tokens
        self.metrics = Metrics()
        self.app = Starlette(
            routes=[
                Route("/tasks", self.list_tasks, methods=["GET"]),
                Route("/tasks/{task}", self.route("tasks", self.ask_task), methods=["POST"]),
                Route(
                    "/v1/chat/completions",
                    self.route("chat", self.chat_completions),
                    methods=["POST"],
                ),
                Route(
                    "/v1/completions", self.route("completions", self.completions), methods=["POST"]
                ),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/metrics", self.metrics_text, methods=["GET"]),
            ]
        )

    # -- catalogue ------------------------------------------------------------------------

    def catalogue(self) -> Catalogue:
        try:
            return self.source.current()
        except CatalogueUnavailable as exc:
            raise GatewayError(503, str(exc), "unavailable") from None

    def task(self, name: Any) -> CatalogueTask:
        catalogue = self.catalogue()
        task = catalogue.task(name) if isinstance(name, str) else None
        if task is None:
            known = ", ".join(sorted(t.name for t in catalogue.tasks)) or "none"
            message = f"unknown task {_quoted(name)}; known tasks: {known}"
            raise GatewayError(404, message, "not_found")
        return task

    # -- plumbing -------------------------------------------------------------------------

    def route(
        self, name: str, handler: Callable[[CatalogueTask, dict], Awaitable[dict]]
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a task handler: parse the body, count, time, turn errors into answers."""

        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            label = UNKNOWN_TASK
            try:
                body = await _json_object(request)
                requested = request.path_params.get("task", body.get("model"))
                if requested is None:
                    raise GatewayError(422, "model: required, the name of a task")
                task = self.task(requested)
                label = task.name
                response: Response = JSONResponse(await handler(task, body))
            except GatewayError as exc:
                response = _error(exc)
            except UpstreamError as exc:
                status = 502 if exc.status is None or exc.status >= 500 else exc.status
                response = _error(GatewayError(status, f"upstream: {exc.message}", "upstream"))
            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                # An engine answer of an unexpected shape: the engine's fault, said so.
                log.exception("%s: unexpected answer from %s", name, self.upstream.shown_url)
                message = f"upstream: an answer of unexpected shape ({type(exc).__name__}: {exc})"
                response = _error(GatewayError(502, message, "upstream"))
            self.metrics.requests.labels(label, name).inc()
            if response.status_code >= 400:
                self.metrics.errors.labels(label, name, str(response.status_code)).inc()
            self.metrics.latency.labels(label, name).observe(time.monotonic() - started)
            return response

        return endpoint

    async def _answer(self, task: CatalogueTask, text: str, max_tokens: int) -> Answer:
        return await run_in_threadpool(
            self.upstream.answer, task.adapter, task.instruction, text, task.labels, max_tokens
        )

    # -- routes ---------------------------------------------------------------------------

    async def list_tasks(self, request: Request) -> Response:
        try:
            catalogue = self.catalogue()
        except GatewayError as exc:
            return _error(exc)
        body = catalogue.model_dump(mode="json", by_alias=True, exclude_none=True)
        return JSONResponse(body)

    async def ask_task(self, task: CatalogueTask, body: dict) -> dict:
        text = _text_field(body, "text")
        max_tokens = _max_tokens(body, self.default_max_new_tokens, "max_new_tokens")
        answer = await self._answer(task, text, max_tokens)
        return {
            "task": task.name,
            "type": task.type,
            "output": answer.output,
            "score": answer.score,
            "adapter": task.adapter,
        }

    async def chat_completions(self, task: CatalogueTask, body: dict) -> dict:
        _no_stream(body)
        text = _last_user_text(body)
        limit = _max_tokens(
            body, self.default_max_new_tokens, "max_completion_tokens", "max_tokens"
        )
        answer = await self._answer(task, text, limit)
        message = {"role": "assistant", "content": answer.output}
        return self._openai("chat.completion", task, answer, {"message": message})

    async def completions(self, task: CatalogueTask, body: dict) -> dict:
        _no_stream(body)
        text = _text_field(body, "prompt")
        limit = _max_tokens(body, self.default_max_new_tokens, "max_tokens")
        answer = await self._answer(task, text, limit)
        return self._openai("text_completion", task, answer, {"text": answer.output})

    @staticmethod
    def _openai(kind: str, task: CatalogueTask, answer: Answer, choice: dict) -> dict:
        prefix = "chatcmpl" if kind == "chat.completion" else "cmpl"
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": task.name,
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None, **choice}],
            "usage": answer.usage
            or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "mtd": {"task": task.name, "adapter": task.adapter, "score": answer.score},
        }

    async def models(self, request: Request) -> Response:
        try:
            catalogue = self.catalogue()
        except GatewayError as exc:
            return _error(exc)
        data = [
            {"id": t.name, "object": "model", "owned_by": "multitask-operator"}
            for t in catalogue.tasks
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(self, request: Request) -> Response:
        try:
            catalogue = self.catalogue()
        except GatewayError as exc:
            return _error(exc)
        return JSONResponse({"status": "ok", "tasks": len(catalogue.tasks)})

    async def metrics_text(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)


def build_gateway(
    catalogue: str,
    upstream_url: str,
    engine: str | None = None,
    base_model: str | None = None,
    timeout: float = REQUEST_TIMEOUT_S,
    api_key: str | None = None,
) -> Gateway:
    upstream = Upstream(
        upstream_url,
        engine,  # type: ignore[arg-type]
        timeout=timeout,
        base_model=base_model,
        api_key=api_key,
    )
    return Gateway(CatalogueSource(catalogue), upstream)


def header_timeout_protocol(seconds: float = HEADER_TIMEOUT_S) -> type:
    """uvicorn's h11 protocol, closing a connection whose request headers have not all
    arrived `seconds` after it opened or after its last response (uvicorn has no such
    timeout: a client sending a header a minute holds its connection for ever)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderTimeoutProtocol(H11Protocol):
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport):  # type: ignore[no-untyped-def]
            super().connection_made(transport)
            self._arm()

        def handle_events(self) -> None:
            before = self.cycle
            super().handle_events()
            if self.cycle is not before:  # a request's headers are all in
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get the same time

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._header_timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _too_slow(self) -> None:
            self._header_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return HeaderTimeoutProtocol


def server_config(
    gateway: Gateway,
    host: str,
    port: int,
    log_level: str = "info",
    header_timeout: float = HEADER_TIMEOUT_S,
) -> Any:
    """The uvicorn settings the gateway always runs with: request headers within
    `header_timeout`, at most MAX_CONCURRENT_REQUESTS connections or requests at once
    (503 beyond), bodies capped by the app (`_body`)."""
    import uvicorn

    return uvicorn.Config(
        gateway.app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=header_timeout_protocol(header_timeout),
        limit_concurrency=MAX_CONCURRENT_REQUESTS,
    )


def serve(gateway: Gateway, host: str, port: int) -> None:
    """Run the gateway until interrupted (uvicorn, one process)."""
    import uvicorn

    uvicorn.Server(server_config(gateway, host, port)).run()


def serve_in_thread(
    gateway: Gateway,
    host: str,
    port: int,
    timeout: float = 30.0,
    header_timeout: float = HEADER_TIMEOUT_S,
) -> Any:
    """Start the gateway in a daemon thread (what `mtd run` does); returns the uvicorn server."""
    import threading

    import uvicorn

    config = server_config(gateway, host, port, "warning", header_timeout)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="mtd-gateway", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise OSError(f"the gateway did not start on {host}:{port}")
        time.sleep(0.05)
    return server
