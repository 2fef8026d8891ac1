"""What every serving engine must say about itself (see `tgi.py` and `vllm.py`)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from ..api.spec import MultiTaskDeploymentSpec
    from ..config import OperatorConfig

SERVING_PORT = 8080
CACHE_MOUNT = "/cache"  # serving engines' writable home and caches (an emptyDir)

AdapterUpdate = Literal["Surge", "OneAtATime", "RuntimeLoad"]


@dataclass(frozen=True)
class EngineContainer:
    """The engine's part of the serving container: the rest (ports, probes, mounts of
    the workspace) is the same for every engine."""

    image: str
    args: list[str]
    env: list[dict[str, Any]]
    command: list[str] | None = None

    def container_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"image": self.image}
        if self.command is not None:
            fields["command"] = self.command
        return {**fields, "args": self.args, "env": self.env}


@dataclass(frozen=True)
class ServeRequest:
    """What to serve: the base model (or, under method full, the fine-tuned model) as the
    pod sees it, and each adapter's engine name → folder."""

    model_path: str
    served_model_id: str
    adapters: dict[str, str]
    full_model: bool = False


class ServingEngine(ABC):
    """One engine's rules. Stateless: one instance per engine (`ENGINES`)."""

    name: str
    # The variable that makes the engine ask every request for `Authorization: Bearer
    # KEY` on its routes that change what it serves; None: it has no such routes.
    api_key_env: str | None = None

    # -- LoRA ranks ----------------------------------------------------------------------

    @abstractmethod
    def served_rank(self, rank: int, shards: int = 1) -> int | None:
        """The rank an adapter of natural rank `rank` is served at (after our zero
        padding), or None when this engine cannot serve it."""

    @abstractmethod
    def padded_ranks(self, spec: MultiTaskDeploymentSpec) -> list[int] | None:
        """The ranks the trainer zero-pads served adapters to, or None (served as made)."""

    @abstractmethod
    def rank_problems(self, spec: MultiTaskDeploymentSpec, shards: int = 1) -> list[str]:
        """Why this spec's adapters cannot be served on `shards` GPUs per replica, each
        message naming the field; empty when they can."""

    def max_served_rank(self, spec: MultiTaskDeploymentSpec) -> int:
        return max(self.served_rank(rank) or rank for _, rank in spec.natural_ranks())

    # -- adapters -----------------------------------------------------------------------

    @abstractmethod
    def adapter_update(self, spec: MultiTaskDeploymentSpec) -> AdapterUpdate:
        """How a new adapter set reaches the serving pods."""

    def adapter_names(self, adapters: dict[str, str]) -> dict[str, str]:
        """Adapter name → the name the engine serves it under (name → folder given)."""
        return {name: name for name in adapters}

    def gateway_args(self, served_model_id: str) -> list[str]:
        """`mtd gateway` flags that name the base model as this engine does."""
        return []

    # -- the pod ------------------------------------------------------------------------

    @abstractmethod
    def image(self, config: OperatorConfig) -> str: ...

    @abstractmethod
    def pod_security(self, config: OperatorConfig) -> dict[str, Any]:
        """The serving pod's securityContext: the chart's override, else what the image
        needs."""

    @abstractmethod
    def container(
        self, spec: MultiTaskDeploymentSpec, config: OperatorConfig, serve: ServeRequest
    ) -> EngineContainer: ...


def cache_env(home: bool) -> dict[str, str]:
    """Caches on the `cache` volume (an emptyDir); with `home`, HOME and the config dir too.
    Every engine gets HF_HUB_OFFLINE: the model and adapters are on the workspace volume."""
    env = {
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": f"{CACHE_MOUNT}/hf",
        "HUGGINGFACE_HUB_CACHE": f"{CACHE_MOUNT}/hf/hub",
        "XDG_CACHE_HOME": f"{CACHE_MOUNT}/xdg",
    }
    if home:
        env["HOME"] = f"{CACHE_MOUNT}/home"
        env["XDG_CONFIG_HOME"] = f"{CACHE_MOUNT}/config"
    return env


def env_list(env: dict[str, str]) -> list[dict[str, Any]]:
    return [{"name": key, "value": value} for key, value in env.items()]


def non_root_pod() -> dict[str, Any]:
    """Our own pods' securityContext (and vLLM's): uid 65532, non-root. `OnRootMismatch`
    spares the kubelet a recursive chown of the workspace volume at every start."""
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "fsGroup": 65532,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def folder_hash(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()[:8]
