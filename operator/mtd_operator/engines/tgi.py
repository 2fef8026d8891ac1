"""TGI (text-generation-inference): the engine the design names, in maintenance mode
upstream since December 2025. It loads adapters only at start-up and pads LoRA ranks to
its kernels' widths, which decides which ranks we may hand it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import (
    SERVING_PORT,
    AdapterUpdate,
    EngineContainer,
    ServeRequest,
    ServingEngine,
    cache_env,
    env_list,
)

if TYPE_CHECKING:
    from ..api.spec import MultiTaskDeploymentSpec
    from ..config import OperatorConfig

# TGI pads a rank above 8 × shards to a multiple of 16 (utils/sgmv.py, pad_rank) and has
# SGMV prefill kernels for 16/32/64/96/128 and BGMV decode kernels for 8/16/32/64/128:
# the ranks both paths have. An adapter of another rank is zero-padded (exact) to the next.
TGI_LORA_RANKS = (16, 32, 64, 128)
# pad_rank's floor: MIN_SGMV_RANK (8) × world size. Below it TGI pads the adapter itself,
# writing the padded rank into the adapter's shared config.r, which changes the α/r scale
# of every layer loaded after the first: our adapters must be at least that wide (a rank
# equal to the floor is left as it is).
MIN_SGMV_RANK = 8


def tgi_served_rank(rank: int, shards: int = 1) -> int | None:
    """The kernel rank an adapter of natural rank `rank` is zero-padded to, or None."""
    floor = MIN_SGMV_RANK * shards
    return next((r for r in TGI_LORA_RANKS if r >= rank and r >= floor), None)


class Tgi(ServingEngine):
    """TGI reads LORA_ADAPTERS at start-up only: it has no route that changes what it
    serves, so it needs no API key (`api_key_env` None); the NetworkPolicy still fences it."""

    name = "tgi"

    def served_rank(self, rank: int, shards: int = 1) -> int | None:
        return tgi_served_rank(rank, shards)

    def padded_ranks(self, spec: MultiTaskDeploymentSpec) -> list[int] | None:
        if spec.training.method == "full":
            return None
        return list(TGI_LORA_RANKS)

    def rank_problems(self, spec: MultiTaskDeploymentSpec, shards: int = 1) -> list[str]:
        if spec.training.method == "full":
            return []
        problems = []
        floor = MIN_SGMV_RANK * shards
        for field, rank in spec.natural_ranks():
            served = tgi_served_rank(rank)
            if served is None:
                problems.append(
                    f"{field}: gives an adapter of rank {rank}, but serving.engine tgi has "
                    f"LoRA kernels for ranks {', '.join(map(str, TGI_LORA_RANKS))} only "
                    "(smaller ranks are padded up): lower the rank, or use serving.engine vllm"
                )
            elif served < floor:
                problems.append(
                    f"{field}: gives an adapter served at rank {served}, but TGI on "
                    f"{shards} GPUs per replica (serving.gpus) pads every rank up to "
                    f"{floor} itself and rescales the other layers wrongly: use a rank of "
                    f"at least {floor}, fewer serving GPUs, or serving.engine vllm"
                )
        return list(dict.fromkeys(problems))

    def adapter_update(self, spec: MultiTaskDeploymentSpec) -> AdapterUpdate:
        """A new set is a new pod template (TGI reads LORA_ADAPTERS only at start-up)."""
        return "OneAtATime" if spec.serving.rollout == "oneAtATime" else "Surge"

    def image(self, config: OperatorConfig) -> str:
        return config.tgi_image

    def pod_security(self, config: OperatorConfig) -> dict[str, Any]:
        """TGI's image installs Python under /root (uv) and cannot start rootless
        (text-generation-inference issue #3082), so by default it runs as the image's user,
        root, with every capability dropped (the container's securityContext)."""
        return dict(
            config.tgi_pod_security_context or {"seccompProfile": {"type": "RuntimeDefault"}}
        )

    def container(
        self, spec: MultiTaskDeploymentSpec, config: OperatorConfig, serve: ServeRequest
    ) -> EngineContainer:
        total = spec.serving.max_model_length
        args = [
            "--model-id", serve.model_path,
            "--port", str(SERVING_PORT),
            "--hostname", "0.0.0.0",
            # The launcher's defaults come from the model's context; a 128k model would not
            # fit a small GPU's KV cache. max-input must stay below max-total.
            "--max-total-tokens", str(total),
            "--max-input-tokens", str(total - 1),
        ]  # fmt: skip
        if config.serving_gpus > 1:  # explicit; the launcher's default is every visible GPU
            args += ["--num-shard", str(config.serving_gpus)]
        security = self.pod_security(config)
        # As root TGI keeps its image's HOME (/root, where its Python lives).
        env = env_list(cache_env(home=security.get("runAsUser", 0) != 0))
        if not serve.full_model:
            pairs = ",".join(f"{name}={path}" for name, path in serve.adapters.items())
            env = [{"name": "LORA_ADAPTERS", "value": pairs}, *env]
        return EngineContainer(image=self.image(config), args=args, env=env)


TGI = Tgi()
