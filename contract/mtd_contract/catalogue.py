"""The task catalogue's document: which adapter answers each task, with the prompt training
used. One model, read and written by every side: the operator and `mtd run` write it (the
core builds it, `mtd_operator.core.catalogue.build_catalogue`), the task gateway routes by
it, the client and `mtd ask` list it. A field renamed here is renamed for all of them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Verdict = Literal["Qualified", "NotQualified", "Inconclusive"]


class CatalogueTask(BaseModel):
    """One task or composition as the gateway and clients see it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1)
    kind: Literal["task", "composition"] = "task"
    type: Literal["classification", "generation"] = "generation"
    instruction: str = Field(min_length=1)
    labels: list[str] | None = None
    metric: str | None = None
    adapter: str | None = Field(default=None, description="Served adapter; None: the base model.")
    served_by: Literal["multiTask", "baseline", "composition"] | None = Field(
        default=None, alias="servedBy"
    )
    verdict: Verdict | None = Field(
        default=None,
        description="The status row's verdict; None while the task is not judged (no "
        "baseline, or not evaluated yet), as status.json says.",
    )
    adapter_digest: str | None = Field(
        default=None,
        alias="adapterDigest",
        description="The digest of the adapter folder's files as its step recorded them "
        "(mtd_contract.digests.folder_digest): the engine refuses an adapter that differs.",
    )

    @model_validator(mode="before")
    @classmethod
    def _type_from_labels(cls, data: Any) -> Any:
        """A row without a type is a classification task when it has labels."""
        if isinstance(data, dict) and data.get("type") is None:
            return {**data, "type": "classification" if data.get("labels") else "generation"}
        return data

    @model_validator(mode="after")
    def _labels_fit_type(self) -> CatalogueTask:
        if self.type == "classification" and not self.labels:
            raise ValueError(f"task {self.name}: type classification needs 2+ labels")
        if self.labels and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name}: labels repeat: {self.labels}")
        return self


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    revision: str | None = Field(default=None, description="The serving revision it describes.")
    prompt_format: Literal["chat", "plain"] = Field(
        default="chat",
        alias="promptFormat",
        description="How the model takes a prompt, as training gave it: chat (its tokenizer's "
        "chat template, /v1/chat/completions) or plain (the contract's plain prompt, "
        "/v1/completions). The gateway sends exactly that.",
    )
    tasks: list[CatalogueTask] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Catalogue:
        counts = Counter(task.name for task in self.tasks)  # linear: catalogues grow large
        repeated = sorted(name for name, count in counts.items() if count > 1)
        if repeated:
            raise ValueError(f"task names repeat: {', '.join(repeated)}")
        return self

    def task(self, name: str) -> CatalogueTask | None:
        return next((task for task in self.tasks if task.name == name), None)

    def renamed(self, names: Mapping[str, str]) -> Catalogue:
        """The same catalogue with adapters under the engine's names (`names[adapter]`)."""
        tasks = [
            task.model_copy(update={"adapter": names.get(task.adapter, task.adapter)})
            if task.adapter is not None
            else task
            for task in self.tasks
        ]
        return self.model_copy(update={"tasks": tasks})

    def served(self, digests: Mapping[str, str], prompt_format: str) -> Catalogue:
        """The same catalogue with each adapter's digest (`digests[adapter]`) and the
        served model's prompt format recorded (both from the desired serving)."""
        tasks = [
            task.model_copy(update={"adapter_digest": digests[task.adapter]})
            if task.adapter is not None and task.adapter in digests
            else task
            for task in self.tasks
        ]
        return self.model_copy(update={"tasks": tasks, "prompt_format": prompt_format})

    def digests(self) -> dict[str, str]:
        """Served adapter name → its digest, for every adapter that has one."""
        return {
            task.adapter: task.adapter_digest
            for task in self.tasks
            if task.adapter is not None and task.adapter_digest is not None
        }

    def to_json(self) -> str:
        body = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return json.dumps(body, indent=2, sort_keys=True) + "\n"
