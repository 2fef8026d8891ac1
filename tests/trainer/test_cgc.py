"""CGC-LoRA on a tiny Llama: per-task gates, per-token routing, exact export to peft LoRA."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from pydantic import ValidationError
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mtd_contract.config import CgcConfig, EvalConfig, LoraConfig, TaskConfig, TrainConfig
from mtd_trainer.cgc import CgcLinear, CgcModel, task_id_tensor
from mtd_trainer.errors import InputError
from mtd_trainer.evaluation import Scorer, eval_examples, evaluate, score_task
from mtd_trainer.modeling import load_tokenizer
from mtd_trainer.training import train

from .conftest import sentiment_task, sounds_task

TASKS = ["sentiment", "sounds"]
CGC = CgcConfig(common_experts=2, specific_experts=1, expert_rank=2)
LORA = LoraConfig(rank=6, alpha=12, dropout=0.0)


def trained_looking(model: CgcModel, seed: int = 0) -> CgcModel:
    """Random experts and gates, as training would leave them (B starts at zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    return model.eval()


def cgc_model(tiny_model: Path, seed: int = 0) -> CgcModel:
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    return trained_looking(CgcModel(base, TASKS, CGC, LORA, str(tiny_model)), seed)


def test_config_needs_cgc_exactly_with_the_method(train_config: Callable[..., dict]) -> None:
    with pytest.raises(ValidationError, match="cgc"):
        TrainConfig.model_validate(train_config(method="cgcLora"))
    with pytest.raises(ValidationError, match="cgc"):
        TrainConfig.model_validate(train_config(cgc={"expert_rank": 2}))
    with pytest.raises(ValidationError, match="at least 1"):
        CgcConfig(common_experts=0, specific_experts=0)
    config = TrainConfig.model_validate(train_config(method="cgcLora", cgc={"expert_rank": 2}))
    assert config.cgc == CgcConfig(common_experts=2, specific_experts=2, expert_rank=2)


def test_layers_are_wrapped_and_only_experts_train(tiny_model: Path) -> None:
    model = cgc_model(tiny_model)
    layers = dict(model.layers())
    # all-linear: attention and MLP projections of both layers, not the output head
    assert len(layers) == 2 * 7
    assert all(isinstance(layer, CgcLinear) for layer in layers.values())
    assert "lm_head" not in " ".join(layers)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(
        any(part in name for part in ("common_", "specific_", "gate")) for name in trainable
    )
    layer = next(iter(layers.values()))
    # each task's gate is a softmax over its own experts: common + its specific ones
    for task in TASKS:
        weights = layer.weights(task)
        assert weights.shape == (3,)
        assert float(weights.detach().sum()) == pytest.approx(1.0)
    assert not torch.allclose(layer.weights("sentiment"), layer.weights("sounds"))
    assert layer.scaling == pytest.approx(12 / (2 * 3))


def test_layer_output_is_the_gated_sum_of_experts(tiny_model: Path) -> None:
    model = cgc_model(tiny_model)
    _, layer = next(iter(model.layers()))
    x = torch.randn(3, layer.base.in_features)
    with model.task("sounds"), torch.no_grad():
        got = layer(x)
    w = torch.softmax(layer.gate["sounds"], 0)
    experts = [(layer.common_A[i], layer.common_B[i]) for i in range(2)]
    experts.append((layer.specific_A["sounds"][0], layer.specific_B["sounds"][0]))
    expected = layer.base(x) + layer.scaling * sum(
        w[i] * (x @ a.T @ b.T) for i, (a, b) in enumerate(experts)
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_exported_adapter_gives_the_cgc_logits_per_task(tiny_model: Path, tmp_path: Path) -> None:
    model = cgc_model(tiny_model)
    ids = torch.randint(3, 300, (2, 11))
    paths = model.export_task_adapters(tmp_path / "adapters")
    for task in TASKS:
        with model.task(task), torch.no_grad():
            expected = model(input_ids=ids).logits
        folder = Path(paths[task])
        config = json.loads((folder / "adapter_config.json").read_text())
        assert config["r"] == config["lora_alpha"] == (2 + 1) * 2
        assert config["base_model_name_or_path"] == str(tiny_model)
        keys = load_file(folder / "adapter_model.safetensors")
        assert len(keys) == 2 * 2 * 7
        assert all(k.startswith("base_model.model.model.layers.") for k in keys)
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        served = PeftModel.from_pretrained(base, str(folder)).eval()
        with torch.no_grad():
            got = served(input_ids=ids).logits
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=2e-5)
        plain = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
        with torch.no_grad():
            assert not torch.allclose(plain(input_ids=ids).logits, expected, atol=1e-3)
    # the two tasks' adapters differ: their gates and specific experts do
    a = load_file(Path(paths["sentiment"]) / "adapter_model.safetensors")
    b = load_file(Path(paths["sounds"]) / "adapter_model.safetensors")
    assert any(not torch.equal(a[key], b[key]) for key in a)


def test_packed_rows_route_each_token_by_its_task(tiny_model: Path) -> None:
    """One row with a sentiment example then a sounds example (positions restart) equals
    each example run alone under its own task."""
    model = cgc_model(tiny_model)
    first, second = torch.randint(3, 300, (1, 5)), torch.randint(3, 300, (1, 4))
    packed = torch.cat([first, second], dim=1)
    positions = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]])
    task_ids = task_id_tensor(TASKS, [("sentiment", 5), ("sounds", 4)])
    assert task_ids.tolist() == [[0, 0, 0, 0, 0, 1, 1, 1, 1]]
    with torch.no_grad():
        logits = model(
            task_ids=task_ids, input_ids=packed, position_ids=positions, use_cache=False
        ).logits
        with model.task("sentiment"):
            alone_first = model(input_ids=first).logits
        with model.task("sounds"):
            alone_second = model(input_ids=second).logits
    torch.testing.assert_close(logits[:, :5], alone_first, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(logits[:, 5:], alone_second, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError, match="task ids"), torch.no_grad():
        model(input_ids=first)


def test_state_round_trips_and_rejects_other_experts(tiny_model: Path, tmp_path: Path) -> None:
    saved = cgc_model(tiny_model, seed=1)
    saved.save_state(tmp_path / "cgc")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    # stage 2 has a new task: the saved ones continue, the new one starts fresh
    again = CgcModel(base, [*TASKS, "extra"], CGC, LORA, str(tiny_model))
    assert again.load_state(str(tmp_path / "cgc")) == TASKS
    own = dict(again.named_parameters())
    for name, param in saved.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(own[name], param)
    other = CgcModel(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        TASKS,
        CgcConfig(common_experts=1, specific_experts=1, expert_rank=2),
        LORA,
        str(tiny_model),
    )
    with pytest.raises(InputError, match="init_adapter"):
        other.load_state(str(tmp_path / "cgc"))
    with pytest.raises(InputError, match="not a CGC state"):
        other.load_state(str(tmp_path))


def test_cgc_run_learns_and_exports_one_adapter_per_task(
    train_config: Callable[..., dict], tiny_model: Path
) -> None:
    raw = train_config(
        "cgc",
        hyperparameters={"max_steps": 24, "learning_rate": 1e-2, "log_every": 4},
        method="cgcLora",
        lora={"rank": 8, "alpha": 16, "dropout": 0.0},
        cgc={"common_experts": 1, "specific_experts": 1, "expert_rank": 4},
    )
    result = train(TrainConfig.model_validate(raw))
    assert result is not None
    output = Path(raw["output_dir"])
    losses = [
        json.loads(line)["loss"] for line in (output / "metrics.jsonl").read_text().splitlines()
    ]
    assert losses[-1] < losses[0] - 0.2, losses
    assert result["artifact"] == str(output / "adapters")
    assert result["adapters"] == {task: str(output / "adapters" / task) for task in TASKS}
    gates = json.loads((output / "cgc" / "gates.json").read_text())
    assert gates["sentiment"] != gates["sounds"]  # each task trained its own gate
    for task in TASKS:
        base = AutoModelForCausalLM.from_pretrained(tiny_model)
        PeftModel.from_pretrained(base, result["adapters"][task])
    assert not (output / "checkpoints").exists()

    # stage 2 continues from the CGC state
    stage2 = train_config(
        "cgc2",
        hyperparameters={"max_steps": 4, "learning_rate": 1e-2, "log_every": 4},
        method="cgcLora",
        lora={"rank": 8, "alpha": 16, "dropout": 0.0},
        cgc={"common_experts": 1, "specific_experts": 1, "expert_rank": 4},
        init_adapter=result["cgc_state"],
    )
    second = train(TrainConfig.model_validate(stage2))
    assert second is not None
    first_loss = json.loads(
        (Path(stage2["output_dir"]) / "metrics.jsonl").read_text().splitlines()[0]
    )["loss"]
    assert first_loss < losses[0] - 0.2


def test_evaluation_with_exported_task_adapters_scores_like_the_cgc_model(
    tiny_model: Path,
    tmp_path: Path,
    sentiment_data: dict[str, Path],
    sounds_data: dict[str, Path],
) -> None:
    model = cgc_model(tiny_model)
    paths = model.export_task_adapters(tmp_path / "adapters")
    tasks = [
        TaskConfig.model_validate(sentiment_task(sentiment_data)),
        TaskConfig.model_validate(sounds_task(sounds_data)),
    ]
    config = EvalConfig(
        run_name="test/cgc-eval",
        base_model=str(tiny_model),
        task_adapters=paths,
        tasks=tasks,
        max_examples=4,
        max_new_tokens=3,
        output_path=str(tmp_path / "eval.json"),
    )
    results = evaluate(config)
    tokenizer = load_tokenizer(str(tiny_model))
    examples = eval_examples(tasks, 4)
    for task in tasks:
        with model.task(task.name), torch.no_grad():
            row = score_task(Scorer(model, tokenizer, 8, 512), task, examples[task.name], 3)
        assert results["tasks"][task.name] == row
    with pytest.raises(ValidationError, match="task_adapters"):
        EvalConfig.model_validate(config.model_dump() | {"task_adapters": {"nope": str(tmp_path)}})
