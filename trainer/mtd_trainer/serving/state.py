"""The one object every route works on: the engine, the catalogue, limits and metrics.

`build_app` puts it in `app.state.serving`; routes receive it through the `Serving`
dependency instead of sharing variables of a closure. The catalogue is the only field
that changes after start-up (POST /adapters swaps it with the adapters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from typing import Annotated

from fastapi import Depends, Request

from .catalogue import Catalogue
from .engine import Engine
from .limits import Limits
from .metrics import Metrics

ROUTER = "mtd-dev-server"


def package_version() -> str:
    try:
        return metadata.version("multitask-operator")
    except metadata.PackageNotFoundError:
        return "dev"


@dataclass
class ServingState:
    """What the server serves (engine, catalogue) and how (limits, metrics, admin token)."""

    engine: Engine
    tasks: Catalogue | None
    limits: Limits
    admin_token: str | None
    metrics: Metrics = field(default_factory=Metrics)
    version: str = field(default_factory=package_version)

    def catalogue_json(self) -> dict[str, object] | None:
        return self.tasks.model_dump() if self.tasks else None


def serving_state(request: Request) -> ServingState:
    state: ServingState = request.app.state.serving
    return state


Serving = Annotated[ServingState, Depends(serving_state)]
