"""What every serving engine must say about itself (see `tgi.py` and `vllm.py`)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, Literal

from mtd_contract.config import EvalConfig

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


def adapter_name(path: str, label: str | None = None) -> str:
    """An adapter folder's name in the engine: vLLM refuses a name twice, so the folder's
    hash keeps a retrained adapter apart from the one it replaces."""
    return f"{label or PurePosixPath(path).name}-{folder_hash(path)}"


@dataclass(frozen=True)
class ScoringPlan:
    """How an evaluation reaches its answers through an engine: the engine's model (the
    base, or a fully fine-tuned model, which replaces it), each task's adapter name there
    (None: the model itself), and the adapters the engine must hold (name → folder)."""

    model: str
    names: dict[str, str | None]
    adapters: dict[str, str]


def scoring_plan(
    config: EvalConfig, base_model: str, is_full: Callable[[str], bool]
) -> ScoringPlan:
    """The ScoringPlan of an evaluation whose base model the engine knows as `base_model`;
    `is_full(folder)` says whether a folder is a fully fine-tuned model."""
    paths = {task.name: config.adapter_of(task.name) for task in config.tasks}
    full = sorted({p for p in paths.values() if p is not None and is_full(p)})
    if len(full) > 1:
        raise ValueError(f"one evaluation scores one fully fine-tuned model, not {full}")
    model = full[0] if full else base_model
    names = {
        task: None if path is None or path == model else adapter_name(path)
        for task, path in paths.items()
    }
    adapters = {name: paths[t] for t, name in names.items() if name is not None}
    return ScoringPlan(model, names, adapters)  # type: ignore[arg-type]
