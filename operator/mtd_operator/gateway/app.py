"""The gateway's HTTP API (Starlette): tasks by name, OpenAI routes with `model` = task.

* `GET /tasks`: the catalogue (each task's type, labels, metric, verdict and adapter);
* `POST /tasks/{task}` with `{"text"}`: `{"task", "output", "score", "adapter"}`, where
  the output of a classification task is always one of its labels;
* `POST /v1/chat/completions` (the last user message is the input) and
  `POST /v1/completions` (`prompt`), with `model` naming the task;
* `GET /v1/models` (the tasks), `GET /v1/models/{task}` (one, with its type, labels,
  metric, verdict and adapter), `GET /health` (200 once a catalogue is loaded) and
  `GET /metrics` (Prometheus: requests, errors and latency per task and route).

An unknown task is a 404 naming the known tasks, on every route. Errors on the OpenAI
routes (`/v1/*`) are OpenAI's (`{"error": {"message", "type", "param", "code"}}`, 400 for a
bad field), elsewhere TGI's (`{"error": message, "error_type": kind}`). OpenAI fields the
gateway cannot honour are refused naming them (`UNSUPPORTED`); sampling fields pass to the
engine (`SAMPLING_FIELDS`), and `finish_reason` and `usage` are the engine's.
Upstream calls are blocking httpx calls, run in Starlette's thread pool.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
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
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mtd_contract.catalogue import Catalogue, CatalogueTask
from mtd_contract.limits import (
    HEADER_TIMEOUT_S,
    MAX_BODY_BYTES,
    MAX_CONCURRENT_REQUESTS,
    MAX_NEW_TOKENS,
    MAX_REQUEST_TEXT_CHARS,
    REQUEST_TIMEOUT_S,
)
from mtd_contract.upstream import (
    SAMPLING_FIELDS,
    Answer,
    Question,
    Upstream,
    UpstreamError,
    answer_score,
    chunk_text,
    reply_json,
    token_logprobs,
)

from .source import CatalogueSource, CatalogueUnavailable

log = logging.getLogger(__name__)
DEFAULT_MAX_NEW_TOKENS = 64
MAX_TEXT_CHARS = MAX_REQUEST_TEXT_CHARS
# How much of a client's value an error message quotes back.
QUOTED_CHARS = 100
UNKNOWN_TASK = "__unknown__"
#: How often a request waiting on the engine checks that its client is still there.
DISCONNECT_POLL_S = 0.5
#: The status counted for a request whose client left before its answer (nginx's 499).
CLIENT_GONE = 499


class ClientGone(Exception):
    """The client closed its connection while the engine was answering."""


class GatewayError(Exception):
    """An answer other than 200: HTTP status, message, TGI-style error type, and for the
    OpenAI routes the request field at fault (`param`) and a code."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "validation",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code


def _invalid(field: str, rule: str) -> GatewayError:
    """A request field that breaks a rule: 422 here, 400 on the OpenAI routes."""
    return GatewayError(422, f"{field}: {rule}", param=field)


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


def _openai_error(exc: GatewayError) -> JSONResponse:
    """OpenAI's error body and status codes (platform.openai.com/docs/guides/error-codes):
    a bad request is a 400 `invalid_request_error` naming the `param`, an unknown model a
    404 with code `model_not_found`, the engine's failures a 5xx `server_error`. The
    official clients raise BadRequestError, NotFoundError, ... with this message."""
    status = 400 if exc.status == 422 else exc.status
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"message": exc.message, "type": kind, "param": exc.param, "code": exc.code}
    return JSONResponse({"error": body}, status_code=status)


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


#: OpenAI request fields the gateway cannot honour yet, and why: refused naming the field,
#: never dropped in silence. A field is refused only when set to other than its default.
UNSUPPORTED: dict[str, tuple[Any, str]] = {
    "best_of": (1, "one candidate per request; allowed: 1"),
    "echo": (False, "the prompt is the task's, not echoed; allowed: false"),
    "suffix": (None, "not supported"),
    "logit_bias": (None, "not supported"),
    "tools": (None, "a task answers with its label or text; no tools"),
    "tool_choice": (None, "a task answers with its label or text; no tools"),
    "functions": (None, "a task answers with its label or text; no functions"),
    "function_call": (None, "a task answers with its label or text; no functions"),
    "parallel_tool_calls": (None, "no tools"),
    "audio": (None, "text only"),
    "modalities": (None, "text only"),
    "prediction": (None, "not supported"),
}


def _streamed(body: dict[str, Any]) -> bool:
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise _invalid("stream", "true or false")
    return stream


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not isinstance(options, dict) or not isinstance(options.get("include_usage", False), bool):
        raise _invalid("stream_options", '{"include_usage": true or false}')
    return bool(options.get("include_usage"))


#: Choices one request may ask for (`n`).
MAX_CHOICES = 16
#: Alternatives per token a client may ask for (`top_logprobs`; OpenAI's bound).
MAX_TOP_LOGPROBS = 20


def _choices(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    if n is None:
        return 1
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CHOICES:
        raise _invalid("n", f"an integer from 1 to {MAX_CHOICES}")
    return n


def _logprob_fields(body: dict[str, Any], chat: bool, engine_chat: bool) -> dict[str, Any]:
    """The log-prob fields a client asked for, in the engine's terms, or {} for none.
    Chat asks with `logprobs: true` (+ `top_logprobs`), completions with `logprobs: N`;
    the engine's answer is passed on as it is, so the client's route must be the one the
    model's prompt format takes at the engine."""
    logprobs, top = body.get("logprobs"), body.get("top_logprobs")
    if chat:
        if logprobs not in (None, True, False):
            raise _invalid("logprobs", "true or false")
        if top is not None and (
            isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_TOP_LOGPROBS
        ):
            raise _invalid("top_logprobs", f"an integer from 0 to {MAX_TOP_LOGPROBS}")
        if top is not None and not logprobs:
            raise _invalid("top_logprobs", "needs logprobs: true")
        wanted: dict[str, Any] = {"logprobs": True, "top_logprobs": top or 0} if logprobs else {}
    else:
        if top is not None:
            raise _invalid("top_logprobs", "a chat field; completions take logprobs: N")
        if logprobs is not None and (
            isinstance(logprobs, bool) or not isinstance(logprobs, int) or not 0 <= logprobs <= 5
        ):
            raise _invalid("logprobs", "an integer from 0 to 5")
        wanted = {"logprobs": logprobs} if logprobs is not None else {}
    if wanted and chat != engine_chat:
        other = "/v1/chat/completions" if engine_chat else "/v1/completions"
        raise _invalid(
            "logprobs",
            f"this model takes its prompt through {other} (as it was trained); ask there "
            "for log-probabilities",
        )
    return wanted


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def _events(
    kind: str,
    task: str,
    first: dict[str, Any] | None,
    chunks: Iterator[dict[str, Any]],
    include_usage: bool,
) -> Iterator[str]:
    """The engine's chunks as OpenAI's stream of `kind` (chat.completion or
    text_completion) for `task`: the new text of each, the finish reason, the usage when
    asked for, then `[DONE]`."""
    chat = kind == "chat.completion"
    ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
    created = int(time.time())
    head = {
        "id": ident,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": task,
    }
    started = False
    try:
        for chunk in itertools.chain([first] if first is not None else [], chunks):
            if chunk.get("choices"):
                text, finish = chunk_text(chunk)
                if chat:
                    delta = {} if started else {"role": "assistant"}
                    choice = {"index": 0, "delta": {**delta, **({"content": text} if text else {})}}
                else:
                    choice = {"index": 0, "text": text}
                started = True
                yield _sse(
                    {**head, "choices": [{**choice, "logprobs": None, "finish_reason": finish}]}
                )
            elif include_usage and chunk.get("usage"):
                yield _sse({**head, "choices": [], "usage": chunk["usage"]})
    except UpstreamError as exc:  # after the first chunk: the status is sent already
        error = {"message": f"upstream: {exc.message}", "type": "server_error", "param": None}
        yield _sse({"error": {**error, "code": None}})
    yield "data: [DONE]\n\n"


def _refuse_unsupported(body: dict[str, Any], task: CatalogueTask) -> None:
    for field, (default, why) in UNSUPPORTED.items():
        value = body.get(field)
        unset = value is None or value == default or value in (False, 0, [], {})
        if not unset:
            raise _invalid(field, why)
    response_format = body.get("response_format")
    if task.labels and response_format is not None and response_format != {"type": "text"}:
        raise _invalid(
            "response_format",
            "the answer is one of the task's labels (the gateway constrains it); allowed: "
            '{"type": "text"} (or leave it out)',
        )
    if response_format is not None and not isinstance(response_format, dict):
        raise _invalid("response_format", 'an object such as {"type": "json_object"}')


def _sampling(body: dict[str, Any], task: CatalogueTask) -> dict[str, Any]:
    """The sampling fields a client set, checked as OpenAI bounds them, for the engine."""
    fields: dict[str, Any] = {}
    for field in SAMPLING_FIELDS:
        value = body.get(field)
        if value is None:
            continue
        if field == "seed":
            if isinstance(value, bool) or not isinstance(value, int):
                raise _invalid(field, "an integer")
        elif field == "stop":
            stops = [value] if isinstance(value, str) else value
            if not isinstance(stops, list) or not all(isinstance(v, str) and v for v in stops):
                raise _invalid(field, "a non-empty string or a list of up to 4 of them")
            if len(stops) > 4:
                raise _invalid(field, "at most 4 sequences")
            if task.labels:
                raise _invalid(field, "a classification answer is one whole label; not allowed")
        else:
            low, high = {"temperature": (0, 2), "top_p": (0, 1)}.get(field, (-2, 2))
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _invalid(field, f"a number from {low} to {high}")
            if not low <= value <= high:
                raise _invalid(field, f"a number from {low} to {high}")
        fields[field] = value
    return fields


def _quoted(value: Any) -> str:
    """A client's value in a message: its repr, cut to QUOTED_CHARS characters."""
    text = repr(value)
    return text if len(text) <= QUOTED_CHARS else f"{text[:QUOTED_CHARS]}... ({len(text)} chars)"


def _text_field(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if isinstance(value, list) and len(value) == 1:  # OpenAI's prompt may be a list
        value = value[0]
    if isinstance(value, list) and len(value) > 1:
        raise _invalid(field, "one prompt per request (a task answers one input at a time)")
    if not isinstance(value, str) or not value.strip():
        raise _invalid(field, "required, a non-empty string")
    if len(value) > MAX_TEXT_CHARS:
        raise _invalid(field, f"at most {MAX_TEXT_CHARS} characters")
    return value


def _max_tokens(body: dict[str, Any], default: int, *fields: str) -> int:
    """The first of `fields` that is set (OpenAI has two names for it), else `default`."""
    for field in fields:
        value = body.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_NEW_TOKENS:
            raise _invalid(field, f"an integer from 1 to {MAX_NEW_TOKENS}")
        return value
    return default


def _last_user_text(body: dict[str, Any]) -> str:
    chat = body.get("messages")
    if not isinstance(chat, list) or not chat:
        raise _invalid("messages", "required, a non-empty list of messages")
    users = [m for m in chat if isinstance(m, dict) and m.get("role") == "user"]
    if not users:
        raise _invalid("messages", "no message with role user (the task's input)")
    content = users[-1].get("content")
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        content = "".join(p for p in parts if isinstance(p, str))
    return _text_field({"messages[].content": content}, "messages[].content")


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
        self.started = int(time.time())
        self._async_http: httpx.AsyncClient | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None
        chat = self.route("chat", self.chat_completions, openai=True)
        completions = self.route("completions", self.completions, openai=True)
        self.app = Starlette(
            routes=[
                Route("/tasks", self.list_tasks, methods=["GET"]),
                Route("/tasks/{task}", self.route("tasks", self.ask_task), methods=["POST"]),
                Route("/v1/chat/completions", chat, methods=["POST"]),
                Route("/v1/completions", completions, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{task}", self.model, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/metrics", self.metrics_text, methods=["GET"]),
            ]
        )

    # -- catalogue ------------------------------------------------------------------------

    async def catalogue(self) -> Catalogue:
        """The current catalogue, (re)read in the thread pool: a changed file of many
        thousand tasks is parsed without holding up the event loop's other requests."""
        try:
            return await run_in_threadpool(self.source.current)
        except CatalogueUnavailable as exc:
            raise GatewayError(503, str(exc), "unavailable") from None

    async def task(self, name: Any) -> CatalogueTask:
        catalogue = await self.catalogue()
        task = catalogue.task(name) if isinstance(name, str) else None
        if task is None:
            known = ", ".join(sorted(t.name for t in catalogue.tasks)) or "none"
            message = f"unknown task {_quoted(name)}; known tasks: {known}"
            raise GatewayError(404, message, "not_found", param="model", code="model_not_found")
        return task

    # -- plumbing -------------------------------------------------------------------------

    def route(
        self,
        name: str,
        handler: Callable[[CatalogueTask, dict, Request], Awaitable[dict | Response]],
        openai: bool = False,
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a task handler: parse the body, count, time, turn errors into answers (in
        OpenAI's shape on the OpenAI routes)."""
        shape = _openai_error if openai else _error

        async def endpoint(request: Request) -> Response:
            started = time.monotonic()
            label = UNKNOWN_TASK
            try:
                body = await _json_object(request)
                requested = request.path_params.get("task", body.get("model"))
                if requested is None:
                    raise _invalid("model", "required, the name of a task")
                task = await self.task(requested)
                label = task.name
                answered = await handler(task, body, request)
                response: Response = (
                    answered if isinstance(answered, Response) else JSONResponse(answered)
                )
            except GatewayError as exc:
                response = shape(exc)
            except ClientGone:
                response = Response(status_code=CLIENT_GONE)  # never read: counted only
            except UpstreamError as exc:
                status = 502 if exc.status is None or exc.status >= 500 else exc.status
                response = shape(GatewayError(status, f"upstream: {exc.message}", "upstream"))
            except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
                # An engine answer of an unexpected shape: the engine's fault, said so.
                log.exception("%s: unexpected answer from %s", name, self.upstream.shown_url)
                message = f"upstream: an answer of unexpected shape ({type(exc).__name__}: {exc})"
                response = shape(GatewayError(502, message, "upstream"))
            self.metrics.requests.labels(label, name).inc()
            if response.status_code >= 400:
                self.metrics.errors.labels(label, name, str(response.status_code)).inc()
            self.metrics.latency.labels(label, name).observe(time.monotonic() - started)
            return response

        return endpoint

    async def _engine(self, request: Request, path: str, body: dict[str, Any]) -> Any:
        """POST `body` to the engine and return its JSON; ClientGone, with the engine's
        request cancelled (its connection closed, so vLLM aborts the generation), once the
        client has left instead of waiting for the answer."""
        call = asyncio.ensure_future(self._http().post(path, json=body))
        try:
            while not call.done():
                await asyncio.wait({call}, timeout=DISCONNECT_POLL_S)
                if not call.done() and await request.is_disconnected():
                    raise ClientGone
            response = call.result()
        except httpx.HTTPError as exc:
            raise self.upstream.unreachable(path, exc) from None
        finally:
            if not call.done():
                call.cancel()
                await asyncio.gather(call, return_exceptions=True)
        return reply_json(response, path)

    def _http(self) -> httpx.AsyncClient:
        """The engine's async client (the Upstream's URL, key and timeout), one per event
        loop: a client's connections belong to the loop that opened them (uvicorn runs
        one loop; a test client may run each request on a new one)."""
        loop = asyncio.get_running_loop()
        if self._async_http is None or self._async_loop is not loop:
            sync = self.upstream.http
            self._async_http = httpx.AsyncClient(
                base_url=sync.base_url, headers=sync.headers, timeout=sync.timeout
            )
            self._async_loop = loop
        return self._async_http

    async def _question(
        self,
        task: CatalogueTask,
        text: str,
        max_tokens: int,
        sampling: dict[str, Any] | None = None,
    ) -> Question:
        """`task`'s question for `text`, in the prompt format training used (the
        catalogue's)."""
        prompt_format = (await self.catalogue()).prompt_format
        return Question(
            task.adapter, task.instruction, text, task.labels, max_tokens, sampling, prompt_format
        )

    async def _engine_request(self, question: Question) -> tuple[str, dict[str, Any]]:
        """The route and body that ask the engine `question`. Built in the thread pool: the
        first request may ask the engine which one it is (a blocking call)."""
        return await run_in_threadpool(self.upstream.request, question)

    async def _answer(self, request: Request, question: Question) -> Answer:
        path, body = await self._engine_request(question)
        out = await self._engine(request, path, body)
        return self.upstream.parse_answer(out, question)

    # -- routes ---------------------------------------------------------------------------

    async def list_tasks(self, request: Request) -> Response:
        try:
            catalogue = await self.catalogue()
        except GatewayError as exc:
            return _error(exc)
        body = catalogue.model_dump(mode="json", by_alias=True, exclude_none=True)
        return JSONResponse(body)

    async def ask_task(self, task: CatalogueTask, body: dict, request: Request) -> dict:
        text = _text_field(body, "text")
        max_tokens = _max_tokens(body, self.default_max_new_tokens, "max_new_tokens")
        answer = await self._answer(request, await self._question(task, text, max_tokens))
        return {
            "task": task.name,
            "type": task.type,
            "output": answer.output,
            "score": answer.score,
            "adapter": task.adapter,
        }

    async def chat_completions(
        self, task: CatalogueTask, body: dict, request: Request
    ) -> dict | Response:
        _refuse_unsupported(body, task)
        sampling = _sampling(body, task)
        text = _last_user_text(body)
        limit = _max_tokens(
            body, self.default_max_new_tokens, "max_completion_tokens", "max_tokens"
        )
        question = await self._question(task, text, limit, sampling)
        if _streamed(body):
            return await self._stream("chat.completion", task, question, body)
        return await self._complete(request, "chat.completion", task, question, body)

    async def completions(
        self, task: CatalogueTask, body: dict, request: Request
    ) -> dict | Response:
        _refuse_unsupported(body, task)
        sampling = _sampling(body, task)
        text = _text_field(body, "prompt")
        limit = _max_tokens(body, self.default_max_new_tokens, "max_tokens")
        question = await self._question(task, text, limit, sampling)
        if _streamed(body):
            return await self._stream("text_completion", task, question, body)
        return await self._complete(request, "text_completion", task, question, body)

    async def _complete(
        self,
        request: Request,
        kind: str,
        task: CatalogueTask,
        question: Question,
        body: dict[str, Any],
    ) -> dict:
        """One engine request with the task's prompt (as training gave it) and the
        client's `n`, log-prob and `response_format` fields; its choices, usage and finish
        reasons in the client's route's shape. A classification's every choice is a label."""
        chat = kind == "chat.completion"
        n = _choices(body)
        path, asked = await self._engine_request(question)
        engine_chat = question.prompt_format == "chat"
        wanted = _logprob_fields(body, chat, engine_chat)
        asked.update(n=n, **wanted)
        if not task.labels and body.get("response_format") is not None:
            asked["response_format"] = body["response_format"]
        out = await self._engine(request, path, asked)
        if not isinstance(out, dict) or not out.get("choices"):
            raise UpstreamError(None, f"{self.upstream.shown_url}: a completion without choices")
        choices = []
        for index, choice in enumerate(out["choices"]):
            content = (choice["message"]["content"] if engine_chat else choice["text"]) or ""
            if task.labels:
                content = self.upstream.checked_label(content, task.labels)
            shaped = (
                {"message": {"role": "assistant", "content": content}}
                if chat
                else {"text": content}
            )
            choices.append(
                {
                    "index": index,
                    **shaped,
                    "logprobs": choice.get("logprobs") if wanted else None,
                    "finish_reason": choice.get("finish_reason") or "stop",
                }
            )
        score = answer_score(token_logprobs({"choices": out["choices"][:1]}), bool(task.labels))
        return {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": task.name,
            "choices": choices,
            "usage": out.get("usage")
            or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "mtd": {"task": task.name, "adapter": task.adapter, "score": score},
        }

    async def _stream(
        self,
        kind: str,
        task: CatalogueTask,
        question: Question,
        body: dict[str, Any],
    ) -> Response:
        """Server-sent events in the client's route's shape, relayed from the engine as it
        generates (whichever route the model's prompt format takes there), ending with
        `data: [DONE]`. A refusal before the first chunk is an ordinary error answer; a
        failure after it, an error event."""
        usage = _include_usage(body)
        path, request = await self._engine_request(question)
        request = {**request, "logprobs": None, "stream_options": {"include_usage": usage}}
        chunks = self.upstream.stream(path, {k: v for k, v in request.items() if v is not None})
        first = await run_in_threadpool(next, chunks, None)  # raises a refusal as an answer
        events = _events(kind, task.name, first, chunks, usage)
        return StreamingResponse(events, media_type="text/event-stream")

    def _model_entry(self, task: CatalogueTask) -> dict[str, Any]:
        """A task as OpenAI lists a model, with what a client needs to call it."""
        return {
            "id": task.name,
            "object": "model",
            "created": self.started,
            "owned_by": "multitask-operator",
            "mtd": task.model_dump(mode="json", by_alias=True, exclude_none=True),
        }

    async def models(self, request: Request) -> Response:
        try:
            catalogue = await self.catalogue()
        except GatewayError as exc:
            return _openai_error(exc)
        data = [self._model_entry(t) for t in catalogue.tasks]
        return JSONResponse({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """`GET /v1/models/{task}`: the task (type, labels, metric, verdict, adapter)."""
        try:
            task = await self.task(request.path_params["task"])
        except GatewayError as exc:
            return _openai_error(exc)
        return JSONResponse(self._model_entry(task))

    async def health(self, request: Request) -> Response:
        try:
            catalogue = await self.catalogue()
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
