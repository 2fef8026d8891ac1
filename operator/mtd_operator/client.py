"""Ask a served multi-task model for one task's answer, by task name.

Two ways, with the same answers:
* through the task gateway (`mtd gateway`, or the gateway Service on a cluster), which
  holds the catalogue and does the wiring: the client posts to `/tasks/{task}`;
* straight to an engine (vLLM or TGI), with the gateway's own upstream code
  (`mtd_contract.upstream`): the task's prompt formatted as training did, each engine's
  model names, and its guided decoding so that a classification answer is always one of
  the task's labels. The catalogue is then given (engines publish none).

No torch: httpx and the gateway's modules only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from mtd_contract.catalogue import Catalogue, CatalogueTask
from mtd_contract.upstream import (
    Engine,
    Question,
    Upstream,
    UpstreamError,
    error_message,
    label_regex,
)

__all__ = [
    "ClientError",
    "MultiTaskClient",
    "Prediction",
    "ServerError",
    "UnknownTaskError",
    "label_regex",
]


class ClientError(Exception):
    """Base class: something the caller can act on, with a message that says what."""


class UnknownTaskError(ClientError):
    pass


class ServerError(ClientError, UpstreamError):
    """The server refused or failed; `message` is the server's own explanation, `status`
    its HTTP status (None: it could not be reached), as the gateway's upstream errors."""

    failure = "server error"


@dataclass(frozen=True)
class Prediction:
    """A task's answer: the label (with its probability) or text (mean token log-prob)."""

    task: str
    output: str
    score: float | None
    adapter: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_catalogue(document: Mapping[str, Any]) -> Catalogue:
    try:
        return Catalogue.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'catalogue'}: {e['msg']}" for e in exc.errors()
        )
        raise ClientError(f"catalogue: {problems}") from None


class MultiTaskClient:
    """Predictions by task name from a gateway, or straight from vLLM or TGI."""

    def __init__(
        self,
        url: str,
        catalogue: Mapping[str, Any] | None = None,
        *,
        engine: Engine | None = None,
        timeout: float = 120.0,
        max_new_tokens: int = 64,
    ) -> None:
        self.url = url.rstrip("/")
        self.max_new_tokens = max_new_tokens
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self.upstream: Upstream | None = None
        gateway = self._gateway_catalogue() if catalogue is None and engine is None else None
        if gateway is not None:
            self.catalogue = parse_catalogue(gateway)
        else:
            self.upstream = Upstream(self.url, engine, timeout=timeout)
            if catalogue is None:
                raise ClientError(
                    f"{self.url} publishes no task catalogue (an engine, not the gateway): "
                    "ask through the task gateway, or pass `catalogue=` with the tasks' "
                    "name, instruction, labels and adapter"
                )
            self.catalogue = parse_catalogue(catalogue)
        self.tasks = {task.name: task for task in self.catalogue.tasks}

    def close(self) -> None:
        self._http.close()
        if self.upstream is not None:
            self.upstream.close()

    def __enter__(self) -> MultiTaskClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def via_gateway(self) -> bool:
        return self.upstream is None

    # -- setup ----------------------------------------------------------------------------

    def _get(self, path: str) -> httpx.Response:
        try:
            return self._http.get(path)
        except httpx.HTTPError as exc:
            raise ServerError(None, f"cannot reach {self.url}: {exc}") from None

    def _gateway_catalogue(self) -> dict[str, Any] | None:
        """The gateway's catalogue (`GET /tasks`); None from an engine, which has no /tasks."""
        response = self._get("/tasks")
        if response.status_code != 200:
            return None
        try:
            body = response.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) and isinstance(body.get("tasks"), list) else None

    # -- predictions ----------------------------------------------------------------------

    def task(self, name: str) -> CatalogueTask:
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise UnknownTaskError(f"unknown task {name!r}; known tasks: {known}") from None

    def predict(self, task: str, text: str) -> Prediction:
        """The task's answer for `text`: a label with its probability, or generated text."""
        if self.upstream is None:
            return self._ask_gateway(task, text)
        spec = self.task(task)
        try:
            answer = self.upstream.answer(
                Question(spec.adapter, spec.instruction, text, spec.labels, self.max_new_tokens)
            )
        except UpstreamError as exc:
            raise ServerError(exc.status, exc.message) from None
        return Prediction(spec.name, answer.output, answer.score, spec.adapter)

    def _ask_gateway(self, task: str, text: str) -> Prediction:
        body = {"text": text, "max_new_tokens": self.max_new_tokens}
        try:
            response = self._http.post(f"/tasks/{quote(task, safe='')}", json=body)
        except httpx.HTTPError as exc:
            raise ServerError(None, f"cannot reach {self.url}: {exc}") from None
        if response.status_code == 404:
            raise UnknownTaskError(error_message(response))
        if response.status_code >= 400:
            raise ServerError(response.status_code, error_message(response))
        result = response.json()
        return Prediction(result["task"], result["output"], result["score"], result["adapter"])
