"""Zero-pad LoRA adapters to a rank the serving engine has kernels for.

TGI pads a rank above 8 to a multiple of 16 and has SGMV/BGMV kernels only for some
ranks (16, 32, 64, 128 in both): an adapter of rank 36 would be padded to 48, find no
kernel, and fail its whole batch. Padding A with zero rows and B with zero columns
leaves B·A, and so every output, exactly as it was; peft's scaling α/r is kept by
scaling α with r.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import InputError

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]


def served_rank(rank: int, supported: Sequence[int] | None, field: str = "served_ranks") -> int:
    """The smallest supported rank ≥ `rank` (`rank` itself when nothing is required)."""
    if not supported:
        return rank
    fitting = [r for r in sorted(supported) if r >= rank]
    if not fitting:
        raise InputError(
            f"{field}: an adapter of rank {rank} exceeds every rank the engine serves "
            f"({', '.join(map(str, sorted(supported)))})"
        )
    return fitting[0]


def pad_factors(factors: Factors, rank: int) -> Factors:
    """(A [r, in], B [out, r]) → (A [rank, in], B [out, rank]), zeros added; B·A unchanged."""
    padded: Factors = {}
    for name, (a, b) in factors.items():
        extra = rank - a.shape[0]
        if extra < 0:
            raise ValueError(f"{name}: rank {a.shape[0]} is above the target {rank}")
        padded[name] = (
            torch.cat([a, a.new_zeros(extra, a.shape[1])], dim=0),
            torch.cat([b, b.new_zeros(b.shape[0], extra)], dim=1),
        )
    return padded


def strip_zero_ranks(factors: Factors) -> Factors:
    """Drop the rank components that are zero in every module (A's row or B's column):
    padding, which merged adapters would otherwise stack. B·A is unchanged."""
    keep: torch.Tensor | None = None
    for a, b in factors.values():
        used = (a != 0).any(dim=1) & (b != 0).any(dim=0)
        keep = used if keep is None else keep | used
    if keep is None or bool(keep.all()):
        return factors
    if not bool(keep.any()):
        keep[0] = True  # an all-zero update still needs rank 1 to be an adapter
    return {name: (a[keep], b[:, keep]) for name, (a, b) in factors.items()}


def pad_peft_adapter(folder: Path, supported: Sequence[int] | None) -> int:
    """Rewrite a saved peft LoRA adapter in place at its served rank; returns that rank."""
    config_file = folder / "adapter_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    rank = int(config["r"])
    target = served_rank(rank, supported)
    if target == rank:
        return rank
    if config.get("rank_pattern"):
        raise ValueError("padding an adapter with a per-module rank_pattern is not supported")
    weights_file = folder / "adapter_model.safetensors"
    tensors = load_file(str(weights_file))
    extra = target - rank
    for key, value in list(tensors.items()):
        if ".lora_A." in key:
            tensors[key] = torch.cat([value, value.new_zeros(extra, value.shape[1])], dim=0)
        elif ".lora_B." in key:
            tensors[key] = torch.cat([value, value.new_zeros(value.shape[0], extra)], dim=1)
    # peft scales by α/r (or α/√r with rsLoRA): keep the scale, so B·A·scale is unchanged.
    factor = math.sqrt(target / rank) if config.get("use_rslora") else target / rank
    alpha = config["lora_alpha"] * factor
    config.update(r=target, lora_alpha=int(alpha) if float(alpha).is_integer() else alpha)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(weights_file), {"format": "pt"})
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    return target
