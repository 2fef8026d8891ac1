"""A stand-in for vLLM's OpenAI-compatible server: its names, fields and refusals, no model.

What it follows (docs.vllm.ai: "OpenAI-Compatible Server", "Structured Outputs",
"LoRA Adapters"):
* `GET /v1/models` lists the base model (no `parent`) and each LoRA module (`parent` =
  the base); there is no `/info`;
* `model` must be the base model's id or a loaded LoRA module's name, else a 404
  (vLLM has no `tgi` name);
* `structured_outputs: {"choice": [...]}` makes the answer one of the choices; the
  removed `guided_*` fields and a `response_format` other than text / json_object /
  json_schema / structural_tag are a 400;
* `POST /v1/load_lora_adapter` / `unload_lora_adapter` exist only when
  `VLLM_ALLOW_RUNTIME_LORA_UPDATING` is set; loading a name twice is a 400.

The answers are deterministic functions of the model name and the prompt (a hash picks
the choice; generation echoes the model), so a test can tell which adapter answered.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

RESPONSE_FORMATS = ("text", "json_object", "json_schema", "structural_tag")
REMOVED = ("guided_choice", "guided_regex", "guided_json", "guided_grammar")


def _error(status: int, message: str, kind: str) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return JSONResponse(body, status_code=status)


def pick(model: str, prompt: str, choices: list[str]) -> str:
    digest = hashlib.sha256(f"{model}\0{prompt}".encode()).digest()
    return choices[digest[0] % len(choices)]


@dataclass
class VllmStandIn:
    base_model: str
    loras: dict[str, str]
    runtime_lora_updating: bool = False
    requests: list[dict[str, Any]] = field(default_factory=list)
    # vLLM's --api-key / VLLM_API_KEY: every path under /v1, /v2, /inference and /cohere
    # needs `Authorization: Bearer KEY`, else 401 (vllm/entrypoints/serve/middleware/
    # authenticate.py, GUARDED_PREFIX; checked on the real engine in tests/engine).
    api_key: str | None = None

    def guard(self, app: Any) -> Any:
        async def guarded(scope: Any, receive: Any, send: Any) -> None:
            path = scope.get("path", "")
            if (
                scope["type"] == "http"
                and self.api_key is not None
                and path.startswith(("/v1", "/v2", "/inference", "/cohere"))
                and dict(scope["headers"]).get(b"authorization", b"").decode()
                != f"Bearer {self.api_key}"
            ):
                await JSONResponse({"error": "Unauthorized"}, status_code=401)(scope, receive, send)
                return
            await app(scope, receive, send)

        return guarded

    def app(self) -> Any:
        return self.guard(self._routes())

    def _routes(self) -> Starlette:
        routes = [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/v1/completions", self.chat, methods=["POST"]),
            Route("/health", lambda _: Response(status_code=200), methods=["GET"]),
        ]
        if self.runtime_lora_updating:
            routes += [
                Route("/v1/load_lora_adapter", self.load, methods=["POST"]),
                Route("/v1/unload_lora_adapter", self.unload, methods=["POST"]),
            ]
        return Starlette(routes=routes)

    async def models(self, _: Request) -> JSONResponse:
        data = [{"id": self.base_model, "object": "model", "root": self.base_model, "parent": None}]
        data += [
            {"id": name, "object": "model", "root": path, "parent": self.base_model}
            for name, path in self.loras.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> JSONResponse:
        body = await request.json()
        self.requests.append(body)
        model = body.get("model")
        if model != self.base_model and model not in self.loras:
            return _error(404, f"The model `{model}` does not exist.", "NotFoundError")
        removed = [name for name in REMOVED if name in body]
        if removed:
            return _error(400, f"{removed[0]}: extra inputs are not permitted", "BadRequestError")
        response_format = body.get("response_format")
        if response_format is not None and response_format.get("type") not in RESPONSE_FORMATS:
            return _error(
                400,
                f"response_format.type: input should be {', '.join(RESPONSE_FORMATS)}",
                "BadRequestError",
            )
        chat = request.url.path.endswith("/chat/completions")
        if not chat and not isinstance(body.get("prompt"), str):
            return _error(400, "prompt: field required", "BadRequestError")
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        if not chat:  # the plain prompt ends in "### Response:\n": answer to the input
            prompt = prompt.removesuffix("\n\n### Response:\n")
        choices = (body.get("structured_outputs") or {}).get("choice")
        if choices:
            content = pick(model, prompt, choices)
        finish = "stop"
        if not choices:
            words = f"{model} says: {prompt.splitlines()[-1]}".split()
            limit = body.get("max_tokens") or 16
            finish = "length" if len(words) > limit else "stop"  # as vLLM reports a cut
            content = " ".join(words[:limit])
        tokens = content.split(" ")
        logprobs = None
        if body.get("logprobs") and chat:
            logprobs = {"content": [{"token": t, "logprob": -0.25} for t in tokens]}
        elif body.get("logprobs"):
            logprobs = {"tokens": tokens, "token_logprobs": [-0.25] * len(tokens)}
        answer = (
            {"message": {"role": "assistant", "content": content}} if chat else {"text": content}
        )
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(tokens),
            "total_tokens": len(prompt.split()) + len(tokens),
        }
        if body.get("stream"):
            return self.streamed(chat, model, tokens, finish, usage, body)
        return JSONResponse(
            {
                "id": "chatcmpl-standin" if chat else "cmpl-standin",
                "object": "chat.completion" if chat else "text_completion",
                "created": int(time.time()),
                "model": model,
                "choices": [  # `n` of them (the same answer: the stand-in is greedy)
                    {"index": i, **answer, "logprobs": logprobs, "finish_reason": finish}
                    for i in range(body.get("n") or 1)
                ],
                "usage": {
                    "prompt_tokens": len(prompt.split()),
                    "completion_tokens": len(tokens),
                    "total_tokens": len(prompt.split()) + len(tokens),
                },
            }
        )

    @staticmethod
    def streamed(
        chat: bool, model: str, tokens: list[str], finish: str, usage: dict, body: dict
    ) -> StreamingResponse:
        """vLLM's stream: a chunk a token (chat: `delta`, completions: `text`), the finish
        reason on the last, a usage chunk when `stream_options.include_usage`, [DONE]."""
        kind = "chat.completion.chunk" if chat else "text_completion"

        def events():
            for index, token in enumerate(tokens):
                piece = token if index == 0 else " " + token
                last = index == len(tokens) - 1
                choice = {"delta": {"content": piece}} if chat else {"text": piece}
                choice.update(index=0, finish_reason=finish if last else None)
                chunk = {"id": "s", "object": kind, "model": model, "choices": [choice]}
                yield f"data: {json.dumps(chunk)}\n\n"
            if (body.get("stream_options") or {}).get("include_usage"):
                chunk = {"id": "s", "object": kind, "model": model, "choices": [], "usage": usage}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    async def load(self, request: Request) -> Response:
        body = await request.json()
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _error(400, "lora_name and lora_path are required", "BadRequestError")
        if name in self.loras:
            return _error(
                400, f"The lora adapter '{name}' has already been loaded.", "InvalidUserInput"
            )
        self.loras[name] = path
        return Response(f"Success: LoRA adapter '{name}' added successfully.")

    async def unload(self, request: Request) -> Response:
        body = await request.json()
        name = body.get("lora_name")
        if name not in self.loras:
            return _error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.loras[name]
        return Response(f"Success: LoRA adapter '{name}' removed successfully.")
