"""Checkpoints that let a killed run end exactly where an uninterrupted one would.

A checkpoint holds the trainable weights only (the adapter, or the whole model under
full fine-tuning), the optimizer and scheduler, the sampler's position and the torch RNG
(LoRA dropout draws from it), plus progress counters. Each is written to a temporary
folder and renamed, so `latest` never sees a half-written one; older ones are removed.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .atomic import atomic_dir, write_json
from .progress import Progress
from .sharding import by_name, load_state, optimizer_state

_NAME = re.compile(r"^step-(\d+)$")


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def latest(folder: Path) -> Path | None:
    """The newest complete checkpoint in `folder` (temporary folders are hidden)."""
    if not folder.is_dir():
        return None
    steps = [
        (int(match[1]), path)
        for path in folder.iterdir()
        if (match := _NAME.match(path.name)) and path.is_dir()
    ]
    return max(steps)[1] if steps else None


def save(
    folder: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    progress: Progress,
    gathered: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> Path:
    """Write one checkpoint (main process only). A sharded model's weights and optimizer
    state come `gathered` (every rank gathered them, `sharding.py`). The optimizer state
    is keyed by parameter name, so DDP and FSDP resume each other's checkpoints."""
    target = folder / f"step-{step:08d}"
    weights, optim = gathered or (trainable_state(model), optimizer_state(model, optimizer))
    with atomic_dir(target) as tmp:
        save_file(weights, str(tmp / "weights.safetensors"))
        torch.save(
            {
                "optimizer": optim,
                "scheduler": scheduler.state_dict(),
                "rng": rng_state(),
            },
            tmp / "state.pt",
        )
        write_json(tmp / "progress.json", progress.to_json())
    for path in folder.iterdir():
        if (match := _NAME.match(path.name)) and int(match[1]) < step:
            shutil.rmtree(path, ignore_errors=True)
    return target


def load(
    path: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> Progress:
    """Restore everything into the given objects; returns the saved progress. Every rank
    reads the checkpoint (a sharded model keeps its shards of it). KeyError or ValueError
    when it is not one this trainer wrote."""
    weights = load_file(str(path / "weights.safetensors"))
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    missing = trainable - set(weights)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {len(missing)} trainable tensors")
    state = torch.load(path / "state.pt", weights_only=True)
    if by_name(state["optimizer"]):
        load_state(model, optimizer, weights, state["optimizer"])
    else:  # written before checkpoints keyed the optimizer state by name
        model.load_state_dict(weights, strict=False)
        optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return Progress.from_json(json.loads((path / "progress.json").read_text(encoding="utf-8")))
