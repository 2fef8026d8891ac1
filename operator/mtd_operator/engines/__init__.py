"""The serving engines, one object each: what its pod runs, which LoRA ranks it serves,
what it calls an adapter and how a new adapter set reaches it.

Every rule here is read from the engine's source at the pinned release and cited in
docs/serving.md; nothing else in the operator branches on the engine's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import AdapterUpdate, EngineContainer, ServingEngine
from .tgi import TGI
from .vllm import VLLM, VLLM_RELEASE

if TYPE_CHECKING:
    from ..api.spec import MultiTaskDeploymentSpec

ENGINES: dict[str, ServingEngine] = {"vllm": VLLM, "tgi": TGI}


def engine_of(spec: MultiTaskDeploymentSpec) -> ServingEngine:
    """The engine a resource is served by (`spec.serving.engine`)."""
    return ENGINES[spec.serving.engine]


__all__ = [
    "ENGINES",
    "TGI",
    "VLLM",
    "VLLM_RELEASE",
    "AdapterUpdate",
    "EngineContainer",
    "ServingEngine",
    "engine_of",
]
