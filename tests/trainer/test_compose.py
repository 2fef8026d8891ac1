"""Compositional tasks: peft merges, Learnable Calibration, one servable adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from pydantic import ValidationError
from transformers import AutoModelForCausalLM, DataCollatorWithFlattening

from mtd_contract.config import CalibrationConfig, ComposeConfig, LoraConfig
from mtd_trainer.cli import main
from mtd_trainer.compose import dataset_loss, load_adapters, lora_factors
from mtd_trainer.data import load_examples
from mtd_trainer.encoding import encode_dataset
from mtd_trainer.modeling import attach_lora, load_tokenizer, save_artifact
from tests.support.tiny_tasks import sentiment_examples, write_jsonl


def random_adapter(base_model: Path, target: Path, seed: int, rank: int = 4) -> Path:
    """A LoRA adapter with random (non-zero) A and B, as a trained one would be."""
    model = attach_lora(
        AutoModelForCausalLM.from_pretrained(base_model),
        LoraConfig(rank=rank, alpha=2 * rank, dropout=0.0),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    save_artifact(model, load_tokenizer(str(base_model)), target)
    return target


@pytest.fixture
def adapters(tiny_model: Path, tmp_path: Path) -> list[Path]:
    return [random_adapter(tiny_model, tmp_path / f"task{i}", seed=i) for i in range(2)]


def compose_config(tiny_model: Path, adapters: list[Path], output: Path, **fields) -> dict:
    return {
        "kind": "compose",
        "run_name": "test/compose",
        "base_model": str(tiny_model),
        "adapters": [{"path": str(adapters[0]), "weight": 0.7}, {"path": str(adapters[1])}],
        "output_dir": str(output),
        **fields,
    }


def deltas(model: PeftModel, adapter: str) -> dict[str, torch.Tensor]:
    return {name: b @ a for name, (a, b) in lora_factors(model, adapter).items()}


def loaded(base_model: Path, adapter: str | Path) -> PeftModel:
    base = AutoModelForCausalLM.from_pretrained(base_model)
    return PeftModel.from_pretrained(base, str(adapter)).eval()


def run_compose(raw: dict, folder: Path) -> dict:
    path = folder / "compose.json"
    path.write_text(json.dumps(raw))
    assert main(["compose", "--config", str(path), "--termination-log", str(folder / "t")]) == 0
    return json.loads((Path(raw["output_dir"]) / "result.json").read_text())


def test_compose_config_is_validated(tiny_model: Path, adapters: list[Path]) -> None:
    raw = compose_config(tiny_model, adapters, Path("out"))
    ComposeConfig.model_validate(raw)
    with pytest.raises(ValidationError, match="adapters"):
        ComposeConfig.model_validate({**raw, "adapters": raw["adapters"][:1]})
    with pytest.raises(ValidationError, match=r"merge\.method"):
        ComposeConfig.model_validate({**raw, "merge": {"method": "svd"}})
    with pytest.raises(ValidationError, match="2\\+ labels"):
        ComposeConfig.model_validate(
            {
                **raw,
                "calibration": {"train_path": "x", "instruction": "i", "type": "classification"},
            }
        )


def test_linear_merge_is_peft_arithmetic(
    tiny_model: Path, adapters: list[Path], tmp_path: Path
) -> None:
    """peft's linear merge: A = Σ √(w·s) A_i and B = Σ √(w·s) B_i (s = α/r = 2)."""
    result = run_compose(compose_config(tiny_model, adapters, tmp_path / "out"), tmp_path)
    assert result["rank"] == result["merge_rank"] == 4
    assert "calibration" not in result
    composed = deltas(loaded(tiny_model, result["artifact"]), "default")
    ones = [deltas(loaded(tiny_model, path), "default") for path in adapters]
    raw_factors = [lora_factors(loaded(tiny_model, path), "default") for path in adapters]
    assert len(composed) == 14
    for name, delta in composed.items():
        coefficient = [math.sqrt(0.7 * 2), math.sqrt(1.0 * 2)]
        a = sum(c * f[name][0] for c, f in zip(coefficient, raw_factors, strict=True))
        b = sum(c * f[name][1] / 2 for c, f in zip(coefficient, raw_factors, strict=True))
        torch.testing.assert_close(delta, b @ a, rtol=1e-5, atol=1e-6)
        # ... which is not the weighted sum of the task updates (cross terms)
        assert not torch.allclose(delta, 0.7 * ones[0][name] + ones[1][name], atol=1e-4)


@pytest.mark.parametrize("method", ["cat", "ties"])
def test_merge_equals_peft_weighted_adapter(
    tiny_model: Path, adapters: list[Path], tmp_path: Path, method: str
) -> None:
    raw = compose_config(tiny_model, adapters, tmp_path / method, merge={"method": method})
    result = run_compose(raw, tmp_path)
    assert result["rank"] == (8 if method == "cat" else 4)
    served = loaded(tiny_model, result["artifact"])
    reference = load_adapters(ComposeConfig.model_validate(raw))  # peft's own merge
    reference.set_adapter("merged")
    ours, theirs = deltas(served, "default"), deltas(reference, "merged")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-5, atol=1e-6)
    if method == "cat":  # cat is exactly the weighted sum of the task updates
        ones = [deltas(loaded(tiny_model, path), "default") for path in adapters]
        for name in ours:
            expected = 0.7 * ones[0][name] + ones[1][name]
            torch.testing.assert_close(ours[name], expected, rtol=1e-5, atol=1e-6)
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(
            served(input_ids=ids).logits, reference(input_ids=ids).logits, rtol=1e-5, atol=1e-5
        )


def test_calibration_lowers_the_loss_and_folds_into_one_adapter(
    tiny_model: Path, adapters: list[Path], tmp_path: Path
) -> None:
    data = write_jsonl(tmp_path / "composed.jsonl", sentiment_examples(32, 11))
    calibration = {
        "train_path": str(data),
        "instruction": "Classify the sentiment.",
        "type": "classification",
        "labels": ["pos", "neg"],
        "rank": 2,
        "max_steps": 20,
        "learning_rate": 1e-2,
        "batch_size": 8,
        "max_seq_length": 64,
        "seed": 3,
    }
    raw = compose_config(tiny_model, adapters, tmp_path / "cal", calibration=calibration)
    result = run_compose(raw, tmp_path)
    stats = result["calibration"]
    assert stats["loss_after"] < stats["loss_before"] - 0.3, stats
    assert result["rank"] == 4 + 2
    # correction: rank 2 × (in + out) per module; a small fraction of the merged adapter
    assert stats["parameters"] < result["parameters"] / 2
    # the folded adapter, loaded by plain peft, reproduces the calibrated model's loss
    config = json.loads((Path(result["artifact"]) / "adapter_config.json").read_text())
    assert config["r"] == config["lora_alpha"] == 6
    served = loaded(tiny_model, result["artifact"])
    tokenizer = load_tokenizer(str(tiny_model))
    task = CalibrationConfig.model_validate(calibration).task()
    rows = [
        {"input_ids": r["input_ids"], "labels": r["labels"]}
        for r in encode_dataset(load_examples(str(data), task), tokenizer, task, 64)
    ]
    loss = dataset_loss(served, rows, 8, DataCollatorWithFlattening())
    assert loss == pytest.approx(stats["loss_after"], abs=1e-4)
    # a second run finds the result and does nothing
    assert run_compose(raw, tmp_path) == result
