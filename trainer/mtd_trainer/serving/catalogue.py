"""The task catalogue a server publishes: which task runs on which adapter, with which prompt.

Clients need it to format a task's prompt exactly as training did and to route to the
task's adapter; publishing it from the server keeps the two from drifting apart. It is
checked when the server starts, so a catalogue naming an adapter that is not loaded is
a start-up error rather than a wrong answer later.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class CatalogueError(ValueError):
    """The catalogue file is unreadable or inconsistent with the loaded adapters."""


class CatalogueTask(BaseModel):
    """One task as clients see it."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    type: Literal["classification", "generation"] = "generation"
    instruction: str
    labels: list[str] | None = None
    adapter: str | None = Field(default=None, description="None means the base model.")

    @model_validator(mode="after")
    def _labels_fit_type(self) -> CatalogueTask:
        if self.type == "classification" and not self.labels:
            raise ValueError(f"task {self.name}: a classification task needs labels")
        if self.labels and len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task {self.name}: labels repeat: {self.labels}")
        return self


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tasks: list[CatalogueTask] = Field(default_factory=list)


def load_catalogue(source: str | Path | Mapping[str, Any], adapters: Iterable[str]) -> Catalogue:
    """Parse a catalogue (file or dict) and check every task's adapter is loaded."""
    if isinstance(source, Mapping):
        data: Any = source
    else:
        try:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise CatalogueError(f"catalogue {source}: {exc}") from None
    try:
        catalogue = Catalogue.model_validate(data)
    except ValidationError as exc:
        raise CatalogueError(f"catalogue: {exc}") from None
    known = set(adapters)
    names = [task.name for task in catalogue.tasks]
    if len(set(names)) != len(names):
        raise CatalogueError(f"catalogue: task names repeat: {names}")
    for task in catalogue.tasks:
        if task.adapter is not None and task.adapter not in known:
            raise CatalogueError(
                f"catalogue: task {task.name} uses adapter {task.adapter!r}, which is not "
                f"loaded (loaded: {sorted(known) or 'none'})"
            )
    return catalogue
