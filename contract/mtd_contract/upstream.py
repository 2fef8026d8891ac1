"""Ask one engine for a task's answer: vLLM or TGI, each in its own terms.

One definition for everything that asks: the task gateway, the command-line client, and
evaluation (which scores through the serving engine, so a verdict describes the answers
users get). The engines agree on `/v1/chat/completions` and differ where it matters here:

* TGI: base model `tgi`, adapters by their `LORA_ADAPTERS` id; classification with
  `response_format: {"type": "regex", "value": "l1|l2"}`;
* vLLM: base model by its served id (`/v1/models`), adapters by their `--lora-modules`
  name; classification with `structured_outputs: {"choice": labels}`.

TGI's regex grammar: its `GrammarType` (router/src/lib.rs; docs "Guidance"). vLLM's
`structured_outputs` replaced `guided_choice` (deprecated in v0.11, removed in v0.12;
docs.vllm.ai/en/latest/features/structured_outputs/); vLLM's `response_format` only takes
`json_schema`/`json_object`/`text`, so TGI's regex form is refused there.

A real TGI answers an unknown `adapter_id` with the base model (it looks the id up with a
default of 0), so nothing here sends a name the catalogue did not give; vLLM refuses
unknown names, and that refusal is passed on.

Synchronous httpx, so that the command-line client and the gateway (which runs these
calls in its thread pool) share every line.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from mtd_contract.prompts import messages, plain_prompt

Engine = Literal["tgi", "vllm"]
#: How a task's example became the model's input in training: the tokenizer's chat
#: template (`chat`: sent as messages to /v1/chat/completions, where the engine applies
#: the same template) or, for a tokenizer without one, the contract's plain prompt
#: (`plain`: sent as text to /v1/completions). The trainer records which in its result.
PromptFormat = Literal["chat", "plain"]
PROMPT_FORMATS: tuple[PromptFormat, ...] = ("chat", "plain")
ENGINES: tuple[Engine, ...] = ("tgi", "vllm")
#: The model name TGI gives the base model in chat requests.
TGI_BASE_MODEL = "tgi"
#: Characters that mean something in a regex; labels escape only these, since the
#: engines behind TGI's grammars (outlines, Rust `regex`) disagree on other escapes.
REGEX_META = frozenset("\\.^$|?*+()[]{}")


def redacted(url: str) -> str:
    """`url` without the credentials it may carry (`user:password@`): what error messages
    and logs show, since the gateway passes upstream errors on to its clients."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


class UpstreamError(Exception):
    """The engine refused, failed or could not be reached; `status` is its HTTP status."""

    #: How the message names a failure that has a status (a subclass names its server).
    failure = "upstream error"

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"{self.failure} {status}: {message}" if status else message)


@dataclass(frozen=True)
class Answer:
    """A task's answer: the label (with its probability) or text (mean token log-prob)."""

    output: str
    score: float | None
    usage: dict[str, int] | None = None
    #: Why the engine stopped: "stop" (the answer ended), "length" (max_tokens cut it).
    finish_reason: str | None = None


@dataclass(frozen=True)
class Question:
    """One task's question to an engine: the adapter that answers (None: the base model),
    the task's instruction and labels, the input, the answer's token budget, a client's
    sampling fields (SAMPLING_FIELDS; None: greedy) and how training formatted the prompt.
    One value for everything that asks, so `request` and `parse_answer` read the same one.
    """

    adapter: str | None
    instruction: str
    text: str
    labels: Sequence[str] | None
    max_tokens: int
    sampling: dict[str, Any] | None = None
    prompt_format: PromptFormat = "chat"


#: Sampling fields a client may set, passed to the engine as given (OpenAI's names, which
#: vLLM and TGI's OpenAI routes take). Without them, answers are greedy (temperature 0).
SAMPLING_FIELDS = ("temperature", "top_p", "seed", "stop", "presence_penalty", "frequency_penalty")


def label_regex(labels: Sequence[str]) -> str:
    """A regex matching exactly one of `labels`."""
    return "|".join("".join("\\" + c if c in REGEX_META else c for c in label) for label in labels)


def error_message(response: httpx.Response) -> str:
    """The message of a TGI (`{"error": str}`) or OpenAI (`{"error": {"message"}}`) body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict):
        error = body.get("error") or body.get("message") or body.get("detail")
        if isinstance(error, dict):
            error = error.get("message")
        if isinstance(error, str) and error:
            return error
    return response.text[:500]


def reply_json(response: httpx.Response, path: str) -> Any:
    """The JSON of an engine's reply to `path`: UpstreamError with the engine's status and
    message for a refusal, or for a body that is not JSON. The blocking `Upstream.post` and
    the gateway's async requests read replies alike."""
    if response.status_code >= 400:
        raise UpstreamError(response.status_code, error_message(response))
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(response.status_code, f"{path}: not JSON") from None


def detect_engine(http: httpx.Client) -> tuple[Engine, str | None]:
    """Which engine answers at the client's base URL, and vLLM's base-model id.

    TGI serves `/info`; vLLM has no `/info` but lists its base model (the entry without a
    `parent`) in `/v1/models`.
    """
    try:
        info = http.get("/info")
        if info.status_code == 200:
            return "tgi", None
        models = http.get("/v1/models")
    except (httpx.HTTPError, ValueError) as exc:
        raise UpstreamError(None, f"cannot reach {redacted(str(http.base_url))}: {exc}") from None
    if models.status_code == 200:
        return "vllm", vllm_base_model(models.json())
    raise UpstreamError(
        models.status_code,
        f"{redacted(str(http.base_url))} answers neither /info (TGI) nor /v1/models (vLLM)",
    )


def vllm_base_model(models: Any) -> str | None:
    """The base model's id in vLLM's `/v1/models` (LoRA modules name it as `parent`)."""
    for entry in models.get("data", []) if isinstance(models, dict) else []:
        if isinstance(entry, dict) and not entry.get("parent"):
            return entry.get("id")
    return None


class Upstream:
    """One engine behind a base URL; `engine` None means: ask it which one it is."""

    def __init__(
        self,
        url: str,
        engine: Engine | None = None,
        *,
        timeout: float = 120.0,
        base_model: str | None = None,
        api_key: str | None = None,
    ) -> None:
        if engine is not None and engine not in ENGINES:
            raise ValueError(f"engine {engine!r}: allowed values are {', '.join(ENGINES)}")
        self.url = url.rstrip("/")
        self.shown_url = redacted(self.url)  # for messages: no credentials in answers
        # The engine's API key (vLLM's --api-key guards every /v1 route), as a bearer token.
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=self.url, timeout=timeout, headers=headers)
        self._engine = engine
        self.base_model = base_model

    @property
    def engine(self) -> Engine:
        """The engine, asked on first use (so a gateway may start before its engine)."""
        if self._engine is None or (self._engine == "vllm" and self.base_model is None):
            detected, base = detect_engine(self.http)
            self._engine = self._engine or detected
            self.base_model = self.base_model or base
        return self._engine

    def close(self) -> None:
        self.http.close()

    def model_name(self, adapter: str | None) -> str:
        """The `model` field that selects `adapter` (None: the base model) on this engine."""
        if adapter is not None:
            return adapter
        if self.engine == "vllm":
            if not self.base_model:
                raise UpstreamError(
                    None, f"{self.shown_url}: vLLM lists no base model in /v1/models"
                )
            return self.base_model
        return TGI_BASE_MODEL

    def guided_choice(self, labels: Sequence[str]) -> dict[str, Any]:
        """The request fields that make the engine answer with exactly one of `labels`."""
        if self.engine == "vllm":
            return {"structured_outputs": {"choice": list(labels)}}
        return {"response_format": {"type": "regex", "value": label_regex(labels)}}

    def unreachable(self, path: str, exc: Exception) -> UpstreamError:
        """The error for a request to `path` that never got an answer (no credentials)."""
        return UpstreamError(None, f"cannot reach {self.shown_url}{path}: {exc}")

    def post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            response = self.http.post(path, json=body)
        except httpx.HTTPError as exc:
            raise self.unreachable(path, exc) from None
        return reply_json(response, path)

    def request(self, question: Question) -> tuple[str, dict[str, Any]]:
        """The route and body that ask the engine `question` with exactly the prompt
        training used (its `prompt_format`): greedy unless its `sampling` says otherwise,
        a classification constrained to its labels, token log-probs for the score."""
        labels = list(question.labels) if question.labels else None
        body: dict[str, Any] = {"model": self.model_name(question.adapter), "temperature": 0}
        prompt = (question.instruction, question.text, labels)
        if question.prompt_format == "plain":
            path = "/v1/completions"
            body.update(prompt=plain_prompt(*prompt), logprobs=1)
        elif question.prompt_format == "chat":
            path = "/v1/chat/completions"
            body.update(messages=messages(*prompt), logprobs=True)
        else:
            raise ValueError(f"prompt_format {question.prompt_format!r}: allowed {PROMPT_FORMATS}")
        body.update(question.sampling or {})
        if labels:
            longest = max(len(label) for label in labels)
            body.update(max_tokens=longest + 8, **self.guided_choice(labels))
        else:
            body["max_tokens"] = question.max_tokens
        return path, body

    def answer(self, question: Question) -> Answer:
        """The engine's answer to `question`: a label with the probability of its tokens,
        or text with their mean log-prob."""
        path, body = self.request(question)
        return self.parse_answer(self.post(path, body), question)

    def parse_answer(self, out: Any, question: Question) -> Answer:
        """The Answer in an engine's reply to `request(question)` (its first choice)."""
        if not isinstance(out, dict) or not out.get("choices"):
            raise UpstreamError(None, f"{self.shown_url}: a completion without choices")
        choice = out["choices"][0]
        # A choice without its text or message is the engine's fault: KeyError/TypeError,
        # which the gateway answers as a 502 naming the shape.
        output = (
            choice["text"] if question.prompt_format == "plain" else choice["message"]["content"]
        ) or ""
        if question.labels:
            output = self.checked_label(output, question.labels)
        score = answer_score(token_logprobs(out), bool(question.labels))
        return Answer(output, score, out.get("usage"), choice.get("finish_reason"))

    def checked_label(self, output: str, labels: Sequence[str]) -> str:
        """`output` as one of `labels`; an engine that answered anything else is at fault."""
        label = output.strip()
        if label not in labels:
            raise UpstreamError(
                None,
                f"the {self.engine} server answered {label!r}, not one of {list(labels)} "
                "(is its guided decoding enabled?)",
            )
        return label

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The engine's streamed chunks (server-sent events, OpenAI's `data: {...}` lines
        up to `data: [DONE]`) for `body` sent with `stream: true`. A refusal before the
        first chunk raises UpstreamError with the engine's status and message."""
        try:
            with self.http.stream("POST", path, json={**body, "stream": True}) as response:
                if response.status_code >= 400:
                    response.read()
                    raise UpstreamError(response.status_code, error_message(response))
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:") :].strip()
                    if data == "[DONE]":
                        return
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise UpstreamError(None, f"{path}: a streamed chunk is not JSON") from None
                    if isinstance(chunk, dict) and "error" in chunk:
                        raise UpstreamError(None, error_message_of(chunk))
                    yield chunk
        except httpx.HTTPError as exc:
            raise self.unreachable(path, exc) from None


def error_message_of(body: dict[str, Any]) -> str:
    """The message of an error object an engine streams (`{"error": {...}}`)."""
    error = body.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    return str(error)[:500]


def chunk_text(chunk: dict[str, Any]) -> tuple[str, str | None]:
    """A streamed chunk's new text and finish reason, from a chat chunk (`delta.content`)
    or a completions chunk (`text`)."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    if "delta" in choice:
        text = (choice.get("delta") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason")


def answer_score(logprobs: list[float], classification: bool) -> float | None:
    """A label's probability (its tokens' product), or text's mean token log-prob."""
    if not logprobs:
        return None
    return math.exp(sum(logprobs)) if classification else sum(logprobs) / len(logprobs)


def token_logprobs(out: dict[str, Any]) -> list[float]:
    """The generated tokens' log-probs: chat's `logprobs.content`, or completions'
    `logprobs.token_logprobs`."""
    logprobs = out["choices"][0].get("logprobs") or {}
    if "token_logprobs" in logprobs:
        return [v for v in logprobs.get("token_logprobs") or [] if v is not None]
    content = logprobs.get("content") or []
    return [entry["logprob"] for entry in content if entry.get("logprob") is not None]
