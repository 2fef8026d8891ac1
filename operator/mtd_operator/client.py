"""Ask a served multi-task model for one task's answer, by task name.

The client knows the task catalogue (from the server's /catalogue, or given, e.g. built
from a workspace's status and spec), so a caller names a task and passes text; the
client formats the prompt exactly as training did (`mtd_contract.prompts`), routes to the
task's adapter, and for classification constrains the answer to the task's labels.

Two servers are supported with the same code:
* ours: classification goes to /classify, which scores every label in one forward pass
  and returns normalised probabilities (exact, and never a label outside the set);
* a real TGI (or any OpenAI-compatible server with TGI's regex `response_format`):
  classification is greedy decoding under a regex of the labels, scored by the
  probability of the generated tokens.
Generation uses /v1/chat/completions everywhere, scored by the mean token log-prob.

Built on huggingface_hub's InferenceClient (TGI's recommended client) and httpx; no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import httpx
from huggingface_hub import InferenceClient
from huggingface_hub.errors import HfHubHTTPError

from mtd_contract.prompts import messages

#: The model name TGI gives its base model in chat requests.
BASE_MODEL = "tgi"
#: Characters that mean something in a regex; labels escape only these, since the
#: engines behind TGI's grammars (outlines, Rust `regex`) disagree on other escapes.
REGEX_META = frozenset("\\.^$|?*+()[]{}")


class ClientError(Exception):
    """Base class: something the caller can act on, with a message that says what."""


class UnknownTaskError(ClientError):
    pass


class ServerError(ClientError):
    """The server refused or failed; `message` is the server's own explanation."""

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"server error {status}: {message}" if status else message)


@dataclass(frozen=True)
class Task:
    name: str
    instruction: str
    labels: tuple[str, ...] | None
    adapter: str | None

    @property
    def is_classification(self) -> bool:
        return bool(self.labels)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Task:
        """A catalogue row: name, instruction, labels (classification), adapter (None: base)."""
        missing = [key for key in ("name", "instruction") if not row.get(key)]
        if missing:
            raise ClientError(f"catalogue row {dict(row)}: missing {', '.join(missing)}")
        labels = row.get("labels")
        if row.get("type") == "classification" and not labels:
            raise ClientError(f"catalogue task {row['name']}: classification without labels")
        return cls(
            name=row["name"],
            instruction=row["instruction"],
            labels=tuple(labels) if labels and row.get("type") != "generation" else None,
            adapter=row.get("adapter"),
        )


@dataclass(frozen=True)
class Prediction:
    """A task's answer: the label (with its probability) or text (mean token log-prob)."""

    task: str
    output: str
    score: float | None
    adapter: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def server_message(response: Any) -> str:
    """The `error` of a TGI-style error body, else the body's text."""
    try:
        body = response.json()
    except ValueError:
        return response.text
    return (body.get("error") if isinstance(body, dict) else None) or response.text


def label_regex(labels: Sequence[str]) -> str:
    """A regex matching exactly one of `labels`."""
    return "|".join("".join("\\" + c if c in REGEX_META else c for c in label) for label in labels)


class MultiTaskClient:
    """Predictions by task name from a served multi-task model (ours or TGI)."""

    def __init__(
        self,
        url: str,
        catalogue: Mapping[str, Any] | None = None,
        *,
        timeout: float = 120.0,
        max_new_tokens: int = 64,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_new_tokens = max_new_tokens
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._inference = InferenceClient(base_url=self.url, timeout=timeout)
        info = self._info()
        self.scores_labels = "/classify" in (info or {}).get("extensions", [])
        if catalogue is None:
            catalogue = self._server_catalogue(info)
        self.tasks = {task.name: task for task in map(Task.from_row, catalogue.get("tasks", []))}

    def close(self) -> None:
        self._http.close()
        self._inference.close()

    def __enter__(self) -> MultiTaskClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- setup ----------------------------------------------------------------------------

    def _info(self) -> dict[str, Any] | None:
        """TGI's /info; None from servers without it (then no extension is assumed)."""
        try:
            response = self._http.get("/info")
        except httpx.HTTPError as exc:
            raise ServerError(None, f"cannot reach {self.url}: {exc}") from None
        return response.json() if response.status_code == 200 else None

    def _server_catalogue(self, info: dict[str, Any] | None) -> Mapping[str, Any]:
        if info is not None and "/catalogue" in info.get("extensions", []):
            return self._checked(self._http.get("/catalogue"))
        raise ClientError(
            f"{self.url} publishes no task catalogue (a plain TGI server?): pass `catalogue=` "
            "with the tasks' name, instruction, labels and adapter"
        )

    @staticmethod
    def _checked(response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise ServerError(response.status_code, server_message(response))
        return response.json()

    # -- predictions ----------------------------------------------------------------------

    def task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}") from None

    def predict(self, task: str, text: str) -> Prediction:
        """The task's answer for `text`: a label with its probability, or generated text."""
        spec = self.task(task)
        chat = messages(spec.instruction, text, list(spec.labels) if spec.labels else None)
        if spec.labels and self.scores_labels:
            return self._classify(spec, chat)
        if spec.labels:
            return self._constrained(spec, chat)
        return self._generate(spec, chat)

    def _classify(self, task: Task, chat: list[dict]) -> Prediction:
        body = {"messages": chat, "labels": list(task.labels or ()), "adapter_id": task.adapter}
        try:
            result = self._checked(self._http.post("/classify", json=body))
        except httpx.HTTPError as exc:
            raise ServerError(None, f"{self.url}/classify: {exc}") from None
        return Prediction(task.name, result["label"], result["probability"], task.adapter)

    def _chat(self, task: Task, chat: list[dict], **options: Any) -> Any:
        try:
            return self._inference.chat_completion(
                chat,
                model=task.adapter or BASE_MODEL,
                temperature=0,
                logprobs=True,
                **options,
            )
        except HfHubHTTPError as exc:
            if exc.response is None:
                raise ServerError(None, str(exc)) from None
            raise ServerError(exc.response.status_code, server_message(exc.response)) from None

    @staticmethod
    def _logprobs(out: Any) -> list[float]:
        logprobs = out.choices[0].logprobs
        content = (logprobs.content if logprobs else None) or []
        return [entry.logprob for entry in content if entry.logprob is not None]

    def _constrained(self, task: Task, chat: list[dict]) -> Prediction:
        out = self._chat(
            task,
            chat,
            max_tokens=self.max_new_tokens,
            response_format={"type": "regex", "value": label_regex(task.labels or ())},
        )
        label = (out.choices[0].message.content or "").strip()
        if label not in (task.labels or ()):
            raise ServerError(
                None,
                f"task {task.name}: the server answered {label!r}, not one of "
                f"{list(task.labels or ())} (does it support a regex response_format?)",
            )
        logprobs = self._logprobs(out)
        return Prediction(
            task.name, label, math.exp(sum(logprobs)) if logprobs else None, task.adapter
        )

    def _generate(self, task: Task, chat: list[dict]) -> Prediction:
        out = self._chat(task, chat, max_tokens=self.max_new_tokens)
        logprobs = self._logprobs(out)
        score = sum(logprobs) / len(logprobs) if logprobs else None
        return Prediction(task.name, out.choices[0].message.content or "", score, task.adapter)
