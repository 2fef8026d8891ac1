"""Every adapter check in one place: which adapter a request names, and who may change them.

Routes take `AdapterGate` (a dependency) and call `gate.resolve(name)`: the name must be
a loaded adapter or a base-model alias, otherwise a 422 listing the loaded adapters
(`Engine.resolve_adapter`). The gate also sets the metrics label, so every route counts
adapters the same way. `require_admin` guards the routes that change what is served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from .limits import authorized
from .state import Serving

BASE_LABEL = "__base__"  # the metrics label for requests on the base model (peft's name)
UNKNOWN_LABEL = "__unknown__"  # unresolved adapter names: keeps label cardinality bounded


class Unauthorized(Exception):
    """An admin route called without the admin token: 401, before the body is read."""


@dataclass(frozen=True)
class Gate:
    """Resolves adapter names for one request against the engine serving it."""

    request: Request
    serving: Serving

    def resolve(self, name: str | None) -> str | None:
        """The engine's adapter for `name` (None: the base model). Metrics use the name the
        user gave: the engine's internal names change with every reload."""
        self.request.state.adapter = UNKNOWN_LABEL
        adapter = self.serving.engine.resolve_adapter(name)
        self.request.state.adapter = name if adapter else BASE_LABEL
        return adapter

    def count_tokens(self, count: int) -> None:
        self.serving.metrics.add_generated_tokens(self.request.state.adapter, count)


def adapter_gate(request: Request, serving: Serving) -> Gate:
    return Gate(request, serving)


def require_admin(request: Request, serving: Serving) -> None:
    """Refuse a caller without `Authorization: Bearer TOKEN`; no token configured: everyone."""
    if not authorized(request.headers.get("authorization"), serving.admin_token):
        raise Unauthorized


AdapterGate = Annotated[Gate, Depends(adapter_gate)]
