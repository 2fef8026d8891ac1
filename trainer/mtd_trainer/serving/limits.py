"""What one client may ask of the server, and who may change what it serves.

A request larger than these limits is refused with a 4xx naming the limit before any
work starts, so no single request can exhaust memory or hold every worker. Defaults
follow TGI's router where it has the same setting (`--payload-limit` 2,000,000 bytes,
`--max-concurrent-requests`, `--max-input-tokens`; see text-generation-inference's
`router/src/main.rs`) and are lower where a CPU development server needs it.

The adapter-changing route is an admin action: it takes a bearer token, read from a
file the user gives or generated at start-up and written there with mode 0600.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Limits:
    """Per-request and per-server bounds; each is a flag of `python -m mtd_trainer.serving`."""

    #: Largest request body in bytes (TGI's --payload-limit default).
    max_body_bytes: int = 2_000_000
    #: Labels one /classify request may score, and the characters of each.
    max_labels: int = 64
    max_label_chars: int = 256
    #: Requests doing model work at once; more get 429 (TGI answers "overloaded" too).
    max_concurrent_requests: int = 16
    #: Labels scored in one forward pass: bounds the memory of a /classify request.
    label_batch: int = 16

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_labels", "max_label_chars", "max_concurrent_requests"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.label_batch < 1:
            raise ValueError(f"label_batch must be at least 1, got {self.label_batch}")


class LimitError(ValueError):
    """A request beyond a limit: the status code and a message naming the limit."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def load_or_create_token(path: Path) -> str:
    """The admin token in `path`; a new random one, written with mode 0600, if absent."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(token + "\n")
        return token
    if not token:
        raise ValueError(f"{path}: the admin token file is empty")
    if path.stat().st_mode & 0o077:
        raise ValueError(f"{path}: the admin token file must not be readable by others (chmod 600)")
    return token


def authorized(header: str | None, token: str | None) -> bool:
    """Whether an Authorization header carries the admin token (constant-time compare)."""
    if token is None or header is None:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip(), token)


async def _refuse(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message, "error_type": "limit"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: refuse a body over `limit` bytes with 413, declared or streamed,
    before the application (and its JSON parser) sees any of it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = f"the request body is larger than max_body_bytes ({self.limit} bytes)"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await _refuse(send, 413, too_large)
            return
        # Read the whole (bounded) body first, then replay it to the application.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _refuse(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replay: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replayed() -> Message:
            return replay.pop() if replay else await receive()

        await self.app(scope, replayed, send)


class ConcurrencyLimit:
    """ASGI middleware: at most `limit` requests on `routes` at once (streams count until
    their last event); one more gets 429 at once rather than a place in a queue."""

    def __init__(self, app: ASGIApp, limit: int, routes: frozenset[str]) -> None:
        self.app = app
        self.limit = limit
        self.routes = routes
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in self.routes:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await _refuse(
                send,
                429,
                f"Model is overloaded: max_concurrent_requests ({self.limit}) are running; "
                "retry later",
            )
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
