"""Served ranks: adapters zero-padded to a rank TGI has kernels for are the same function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mtd_contract.config import EvalConfig
from mtd_trainer.errors import InputError
from mtd_trainer.evaluation import evaluate
from mtd_trainer.modeling import load_tokenizer, save_artifact
from mtd_trainer.ranks import pad_factors, served_rank
from tests.support.tiny_tasks import sentiment_examples, write_jsonl

from .test_compose import compose_config, loaded, random_adapter, run_compose

TGI = [16, 32, 64, 128]


def test_served_rank_is_the_next_kernel_rank() -> None:
    assert [served_rank(r, TGI) for r in (1, 16, 17, 36, 48, 96, 128)] == [
        16, 16, 32, 64, 64, 128, 128,
    ]  # fmt: skip
    assert served_rank(36, None) == 36
    with pytest.raises(InputError, match="rank 129 exceeds"):
        served_rank(129, TGI)


def test_pad_factors_keeps_the_product() -> None:
    a, b = torch.randn(3, 5), torch.randn(7, 3)
    (pa, pb) = pad_factors({"m": (a, b)}, 16)["m"]
    assert pa.shape == (16, 5) and pb.shape == (7, 16)
    torch.testing.assert_close(pb @ pa, b @ a)


def test_trained_adapter_is_saved_padded_with_the_same_logits(
    tiny_model: Path, tmp_path: Path
) -> None:
    plain = random_adapter(tiny_model, tmp_path / "plain", seed=5, rank=4)
    model = loaded(tiny_model, plain)
    padded = save_artifact(model, load_tokenizer(str(tiny_model)), tmp_path / "padded", TGI)
    config = json.loads((padded / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (16, 32)  # α/r stays 2
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(tiny_model, padded)(input_ids=ids).logits,
            loaded(tiny_model, plain)(input_ids=ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )


def test_calibrated_composition_of_rank_16_adapters_is_served_at_64(
    tiny_model: Path, tmp_path: Path
) -> None:
    """2 × 16 (cat) + 4 (calibration) = 36, which TGI has no kernel for: served at 64, and
    its logits and evaluation scores equal the unpadded adapter's."""
    adapters = [random_adapter(tiny_model, tmp_path / f"t{i}", seed=i, rank=16) for i in (1, 2)]
    data = write_jsonl(tmp_path / "composed.jsonl", sentiment_examples(16, 11))
    eval_data = write_jsonl(tmp_path / "composed-eval.jsonl", sentiment_examples(12, 12))
    calibration = {
        "train_path": str(data),
        "instruction": "Classify the sentiment.",
        "type": "classification",
        "labels": ["pos", "neg"],
        "rank": 4,
        "max_steps": 3,
        "batch_size": 4,
        "max_seq_length": 64,
        "seed": 3,
    }
    results = {}
    for name, ranks in (("natural", None), ("tgi", TGI)):
        raw = compose_config(
            tiny_model,
            adapters,
            tmp_path / name,
            merge={"method": "cat"},
            calibration=calibration,
            served_ranks=ranks,
        )
        results[name] = run_compose(raw, tmp_path)
    assert results["natural"]["rank"] == results["tgi"]["natural_rank"] == 36
    assert results["tgi"]["rank"] == 64
    config = json.loads((Path(results["tgi"]["artifact"]) / "adapter_config.json").read_text())
    assert config["r"] == 64
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(tiny_model, results["tgi"]["artifact"])(input_ids=ids).logits,
            loaded(tiny_model, results["natural"]["artifact"])(input_ids=ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )
    scores = {}
    for name, result in results.items():
        task = {
            "name": "composed",
            "type": "classification",
            "instruction": "Classify the sentiment.",
            "labels": ["pos", "neg"],
            "metric": "accuracy",
            "eval_path": str(eval_data),
        }
        config = EvalConfig.model_validate(
            {
                "run_name": f"test/{name}",
                "base_model": str(tiny_model),
                "adapter": result["artifact"],
                "tasks": [task],
                "output_path": str(tmp_path / f"{name}-scores.json"),
            }
        )
        scores[name] = evaluate(config)
    assert scores["tgi"]["tasks"] == scores["natural"]["tasks"]


def test_a_merge_of_padded_adapters_has_the_natural_rank(tiny_model: Path, tmp_path: Path) -> None:
    """Task adapters padded 4 → 16 for TGI merge (cat) to 4 + 4 = 8, served at 16, not 32."""
    plain = [random_adapter(tiny_model, tmp_path / f"p{i}", seed=i, rank=4) for i in (1, 2)]
    tokenizer = load_tokenizer(str(tiny_model))
    padded = [
        save_artifact(loaded(tiny_model, path), tokenizer, tmp_path / f"pad{i}", TGI)
        for i, path in enumerate(plain)
    ]
    results = {}
    for name, inputs, ranks in (("plain", plain, None), ("padded", padded, TGI)):
        raw = compose_config(
            tiny_model, inputs, tmp_path / name, merge={"method": "cat"}, served_ranks=ranks
        )
        results[name] = run_compose(raw, tmp_path)
    assert results["padded"]["merge_rank"] == results["plain"]["rank"] == 8
    assert results["padded"]["rank"] == 16
    ids = torch.randint(3, 300, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(tiny_model, results["padded"]["artifact"])(input_ids=ids).logits,
            loaded(tiny_model, results["plain"]["artifact"])(input_ids=ids).logits,
            rtol=1e-5,
            atol=1e-5,
        )
