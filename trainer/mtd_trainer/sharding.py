"""Fully sharded data parallel (FSDP2): who shards the model, and its gathered state.

accelerate shards through its FSDP plugin only on an accelerator: `AcceleratorState`
turns a run into `DistributedType.FSDP` only when it is already MULTI_GPU (or another
accelerator type), never MULTI_CPU (accelerate 1.15 `state.py`, `AcceleratorState.__init__`,
the `elif self.distributed_type in [DistributedType.MULTI_GPU, ...]` branch that reads
`ACCELERATE_USE_FSDP`/`fsdp_plugin`), and without `cpu=True` a torchrun launch on a
GPU-less host stays `DistributedType.NO` (`PartialState._prepare_backend`: only `cpu`
selects MULTI_CPU with gloo). So on CUDA accelerate shards (`fsdp_version=2`, which calls
torch's `fully_shard`); on a CPU host (the tests, the emulator) this module calls
`fully_shard` itself on a gloo mesh. Either way the model ends as the same FSDP2 module,
so checkpoints, evaluation and export below do not care who sharded it.

State leaves the shards through `torch.distributed.checkpoint.state_dict`: full
(gathered) tensors, offloaded to the CPU of rank 0, which alone writes.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

Sharder = Literal["none", "accelerate", "torch"]


def sharder(strategy: str, cuda: bool, processes: int) -> Sharder:
    """Who shards: nobody (DDP, or one process), accelerate's FSDP plugin (CUDA), or
    torch's `fully_shard` directly (CPU, where accelerate cannot; see the module doc)."""
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"strategy: {strategy!r} is unknown; allowed: ddp, fsdp")
    if strategy == "ddp" or processes <= 1:
        return "none"
    return "accelerate" if cuda else "torch"


def accelerate_plugin() -> Any:
    """accelerate's FSDP2 plugin: shard each decoder layer (the model's `_no_split_modules`)."""
    from accelerate import FullyShardedDataParallelPlugin

    return FullyShardedDataParallelPlugin(
        fsdp_version=2,
        auto_wrap_policy="transformer_based_wrap",
        reshard_after_forward=True,
        state_dict_type="FULL_STATE_DICT",
    )


def layer_classes(model: torch.nn.Module) -> set[str]:
    """Class names transformers says must not be split: one FSDP unit each."""
    names: set[str] = set()
    for module in model.modules():
        names.update(getattr(module, "_no_split_modules", None) or ())
    return names


def shard_with_torch(model: torch.nn.Module) -> torch.nn.Module:
    """`fully_shard` every decoder layer, then the root, over all processes (gloo on CPU)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    world = torch.distributed.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    layers = layer_classes(model)
    for module in list(model.modules()):
        if type(module).__name__ in layers:
            fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable weights, gathered on rank 0 (empty elsewhere); every rank must call."""
    names = {name for name, param in model.named_parameters() if param.requires_grad}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    state = get_model_state_dict(model, options=options)
    return {name: tensor.contiguous() for name, tensor in state.items() if name in names}


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights, gathered on rank 0 (empty elsewhere)."""
    return get_model_state_dict(model, options=_GATHER)


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state keyed by parameter name (not index), so a checkpoint resumes
    under either strategy; a sharded model's is gathered on rank 0 (every rank calls)."""
    options = _GATHER if is_sharded(model) else StateDictOptions(full_state_dict=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def by_name(optim: dict[str, Any]) -> bool:
    """Whether an optimizer state is keyed by parameter name (older checkpoints: index)."""
    return all(isinstance(key, str) for key in optim.get("state", {}))


def load_state(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    weights: dict[str, torch.Tensor],
    optim: dict[str, Any],
) -> None:
    """Load full weights and name-keyed optimizer state (every rank read them); a sharded
    model keeps its own shard of each."""
    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optim, options=options)
