"""The FastAPI application: the part of TGI's API that clients use, plus ours.

`build_app` assembles it: one `ServingState` (engine, catalogue, limits, metrics, admin
token) in `app.state.serving`, the routers of `routes/` (TGI, OpenAI, our extensions,
operations), the middleware that bounds every request (`limits.py`) and counts it
(`metrics.py`), and the error handlers. Every error is a JSON body {"error",
"error_type"} as TGI sends, so both TGI clients raise their typed errors with the
server's message. Adapter checks live in `access.py`, worker threads in `work.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from . import routes
from .access import BASE_LABEL, Unauthorized
from .catalogue import load_catalogue
from .engine import Engine, EngineError
from .grammar import GrammarError
from .limits import BodyLimit, ConcurrencyLimit, Limits, load_or_create_token
from .metrics import ObserveRequests
from .state import ServingState

#: Routes that run the model: what max_concurrent_requests counts.
WORK_ROUTES = frozenset({"/", "/generate", "/generate_stream", "/v1/chat/completions", "/classify"})


def _error(status: int, message: str, error_type: str = "validation") -> JSONResponse:
    # Messages may quote the request (a field name, say), lone surrogates included: escape
    # those, or the response itself could not be encoded and the client would get a 500.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


async def _engine_error(_: Request, exc: Exception) -> JSONResponse:
    return _error(422, str(exc))


async def _bad_request(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return _error(400, "the request body is not valid JSON")
    parts = []
    for error in errors:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg')}")
    return _error(422, "Input validation error: " + "; ".join(parts))


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return _error(exc.status_code, str(exc.detail), "http")


async def _unauthorized(_: Request, __: Exception) -> JSONResponse:
    return JSONResponse(
        {
            "error": "changing the adapters needs the admin token: "
            "Authorization: Bearer TOKEN (see --admin-token-file)",
            "error_type": "authentication",
        },
        status_code=401,
        headers={"WWW-Authenticate": "Bearer"},
    )


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
    tasks = load_catalogue(catalogue, engine.adapters) if catalogue is not None else None
    state = ServingState(engine, tasks, limits or Limits(), admin_token)
    app = FastAPI(title="multitask-operator development server", version=state.version)
    app.state.serving = state
    # Added last, runs first: the body limit guards everything, including the metrics.
    app.add_middleware(ObserveRequests, metrics=state.metrics, default_label=BASE_LABEL)
    app.add_middleware(
        ConcurrencyLimit, limit=state.limits.max_concurrent_requests, routes=WORK_ROUTES
    )
    app.add_middleware(BodyLimit, limit=state.limits.max_body_bytes)
    app.add_exception_handler(EngineError, _engine_error)
    app.add_exception_handler(GrammarError, _engine_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Unauthorized, _unauthorized)
    for router in (routes.tgi, routes.openai, routes.ours, routes.ops):
        app.include_router(router)
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
