"""Compositional tasks (arXiv 2507.16083): merge task adapters, then calibrate the merge.

1. **Merge.** The task adapters are loaded onto the base and combined by peft's
   `add_weighted_adapter` (`linear`, `cat` or `ties`). peft's `linear` and `ties` mix
   A and B separately, each scaled by √(weight·α/r), so the merge has the tasks' rank;
   `cat` stacks them, so B·A is exactly Σ weight_i·(α_i/r_i)·B_i A_i.
2. **Learnable Calibration** (optional, its "++" variant): a small LoRA correction of
   rank `calibration.rank` trained on a few compositional examples, with the base model
   and the merged adapter frozen (the merge is added into a copy of the base weights,
   which is the same function), starting from zero so training starts at the merge.
3. **Fold.** The merge (rank r1) and the correction (rank rc) are both low-rank updates
   of the same modules, so together they are one LoRA adapter of rank r1 + rc: A
   stacked, B concatenated with each part's scaling folded in. That adapter is served
   like any task's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import peft
import torch
from accelerate.utils import set_seed
from transformers import DataCollatorWithFlattening

from mtd_contract.config import CalibrationConfig, ComposeConfig, LoraConfig
from mtd_contract.layout import ADAPTER_DIR, RESULT_FILE

from .data import load_examples
from .encoding import IGNORE, encode_dataset
from .errors import InputError
from .modeling import (
    attach_lora,
    load_adapter,
    load_model,
    load_tokenizer,
    local_placement,
    same_model,
    write_lora_adapter,
)
from .ranks import served_rank, strip_zero_ranks
from .verified import reusable, write_result

log = logging.getLogger(__name__)

MERGED = "merged"

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]


def lora_factors(model: peft.PeftModel, adapter: str) -> Factors:
    """Per module (name as in the base model): (A, scaling·B) of one loaded adapter."""
    factors: Factors = {}
    prefix = "base_model.model."
    for name, module in model.named_modules():
        if isinstance(module, peft.tuners.lora.LoraLayer) and adapter in module.lora_A:
            a = module.lora_A[adapter].weight.detach().float()
            b = module.lora_B[adapter].weight.detach().float() * module.scaling[adapter]
            factors[name.removeprefix(prefix)] = (a.clone(), b.clone())
    return factors


def load_adapters(config: ComposeConfig) -> peft.PeftModel:
    """The base with every adapter loaded (named a0, a1, ...), checked against the base."""
    model = load_model(config.base_model, placement=local_placement())
    first = config.adapters[0].path
    peft_model = load_adapter(model, first, config.base_model, "adapters[0].path", False)
    names = ["default"]
    for index, ref in enumerate(config.adapters[1:], start=1):
        field = f"adapters[{index}].path"
        config_file = Path(ref.path) / "adapter_config.json"
        if not config_file.is_file():
            raise InputError(f"{field}: {ref.path} is not a peft adapter")
        recorded = json.loads(config_file.read_text(encoding="utf-8")).get(
            "base_model_name_or_path"
        )
        if recorded and not same_model(recorded, config.base_model):
            raise InputError(f"{field}: {ref.path} was trained on {recorded}")
        try:
            peft_model.load_adapter(ref.path, adapter_name=f"a{index}")
        except (RuntimeError, ValueError, KeyError) as exc:
            raise InputError(f"{field}: {ref.path} does not fit {config.base_model}") from exc
        names.append(f"a{index}")
    try:
        peft_model.add_weighted_adapter(
            names,
            [ref.weight for ref in config.adapters],
            MERGED,
            combination_type=config.merge.method,
            density=config.merge.density if config.merge.method == "ties" else None,
        )
    except ValueError as exc:
        raise InputError(f"merge.method: {config.merge.method}: {exc}") from None
    return peft_model


def merged_factors(config: ComposeConfig) -> Factors:
    """The merge's factors, without the zero padding its inputs may carry for TGI."""
    return strip_zero_ranks(lora_factors(load_adapters(config), MERGED))


def on_device(batch: dict[str, Any], model: torch.nn.Module) -> dict[str, Any]:
    """A collated batch moved to the model's device (CUDA when there is one)."""
    device = next(model.parameters()).device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def with_update(model: torch.nn.Module, factors: Factors) -> torch.nn.Module:
    """Add B·A into each named linear weight (the frozen merge, for calibration)."""
    with torch.no_grad():
        for name, (a, b) in factors.items():
            weight = model.get_submodule(name).weight
            weight += (b @ a).to(weight.dtype)
    return model


def dataset_loss(
    model: torch.nn.Module, rows: list[dict[str, Any]], batch_size: int, collate: Any
) -> float:
    """Mean loss over every answer token of `rows`."""
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            targets = sum(sum(label != IGNORE for label in row["labels"][1:]) for row in chunk)
            batch = collate([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in chunk])
            batch = on_device(batch, model)
            total += model(**batch, use_cache=False).loss.item() * targets
            count += targets
    model.train()
    return total / max(count, 1)


LOSS_PROBE_BATCHES = 4  # the loss before and after is measured on this many batches


def calibrate(
    config: ComposeConfig, calibration: CalibrationConfig, merge: Factors
) -> tuple[Factors, dict[str, Any]]:
    """Train a rank-rc correction on top of the frozen base + merge; returns its factors."""
    set_seed(calibration.seed)
    tokenizer = load_tokenizer(config.base_model)
    task = calibration.task()
    encoded = encode_dataset(
        load_examples(calibration.train_path, task), tokenizer, task, calibration.max_seq_length
    )
    rows = [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in encoded]
    base = with_update(load_model(config.base_model, placement=local_placement()), merge)
    lora = LoraConfig(
        rank=calibration.rank,
        alpha=calibration.rank,
        dropout=0.0,
        target_modules=sorted(merge),
    )
    model = attach_lora(base, lora)  # B = 0: training starts exactly at the merge
    collate = DataCollatorWithFlattening()
    # A fixed probe, not the whole set: a report of the correction's effect, which on a
    # CPU would otherwise cost as much as the calibration itself.
    probe = rows[: LOSS_PROBE_BATCHES * calibration.batch_size]
    before = dataset_loss(model, probe, calibration.batch_size, collate)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=calibration.learning_rate
    )
    generator = torch.Generator().manual_seed(calibration.seed)
    model.train()
    log.info(
        "calibration: %d steps of %d on %d examples, merge loss %.4f (first %d examples)",
        calibration.max_steps, calibration.batch_size, len(rows), before, len(probe),
    )  # fmt: skip
    every = max(1, calibration.max_steps // 10)
    for step in range(1, calibration.max_steps + 1):
        picks = torch.randint(len(rows), (calibration.batch_size,), generator=generator)
        batch = on_device(collate([rows[int(i)] for i in picks]), model)
        loss = model(**batch, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step % every == 0 or step == calibration.max_steps:
            log.info("calibration step %d/%d: batch loss %.4f", step, calibration.max_steps,
                     loss.item())  # fmt: skip
    after = dataset_loss(model, probe, calibration.batch_size, collate)
    correction = lora_factors(model, "default")
    parameters = sum(a.numel() + b.numel() for a, b in correction.values())
    stats = {
        "examples": len(rows),
        "loss_examples": len(probe),
        "steps": calibration.max_steps,
        "rank": calibration.rank,
        "loss_before": before,
        "loss_after": after,
        "parameters": parameters,
    }
    log.info("calibration: loss %.4f -> %.4f (%d parameters)", before, after, parameters)
    return correction, stats


def fold(merge: Factors, correction: Factors) -> Factors:
    """Two low-rank updates of the same modules as one: A stacked, B concatenated."""
    if set(merge) != set(correction):
        raise ValueError("the merge and the correction adapt different modules")
    return {
        name: (
            torch.cat([merge[name][0], correction[name][0]], dim=0),
            torch.cat([merge[name][1], correction[name][1]], dim=1),
        )
        for name in merge
    }


def compose(config: ComposeConfig) -> dict[str, Any]:
    """Merge (and calibrate) into output_dir/adapter; returns (and writes) result.json."""
    output = Path(config.output_dir)
    result_path = output / RESULT_FILE
    done = reusable(result_path)
    if done is not None:
        log.info("%s exists and its files match it: this composition is complete", result_path)
        return done
    merge = merged_factors(config)
    merge_rank = next(iter(merge.values()))[0].shape[0]
    factors = merge
    result: dict[str, Any] = {
        "run_name": config.run_name,
        "merge": config.merge.method,
        "weights": [ref.weight for ref in config.adapters],
        "merge_rank": merge_rank,
    }
    if config.calibration is not None:
        correction, result["calibration"] = calibrate(config, config.calibration, merge)
        factors = fold(merge, correction)
    natural_rank = next(iter(factors.values()))[0].shape[0]
    rank = served_rank(natural_rank, config.served_ranks)
    artifact = write_lora_adapter(output / ADAPTER_DIR, factors, config.base_model, [rank])
    result.update(
        natural_rank=natural_rank,
        rank=rank,
        parameters=sum(a.numel() + b.numel() for a, b in factors.values()),
        artifact=str(artifact),
    )
    return write_result(result_path, result, [artifact])
