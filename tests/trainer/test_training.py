"""Training on a tiny Llama: learning, artifacts, stage chaining, kill-and-resume."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from peft import PeftModel, get_peft_model_state_dict
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from mtd_contract.config import TrainConfig
from mtd_trainer.cgc import STATE_FILE
from mtd_trainer.training import Run, train

TGI_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


def metric_lines(output_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (output_dir / "metrics.jsonl").read_text().splitlines()]


def test_loss_falls_on_a_learnable_task(train_config: Callable[..., dict]) -> None:
    raw = train_config(
        "learn",
        hyperparameters={"max_steps": 30, "learning_rate": 1e-2, "log_every": 5},
        lora={"rank": 8, "alpha": 16, "dropout": 0.0},
    )
    raw["tasks"] = raw["tasks"][:1]
    raw["sampling"]["rates"] = {"sentiment": 1.0}
    train(TrainConfig.model_validate(raw))
    losses = [line["loss"] for line in metric_lines(Path(raw["output_dir"]))]
    assert len(losses) == 6
    assert losses[-1] < losses[0] - 0.2, losses


def test_run_writes_tgi_adapter_result_and_metrics(
    train_config: Callable[..., dict], tiny_model: Path
) -> None:
    raw = train_config("artifacts", hyperparameters={"eval_every": 6, "eval_max_new_tokens": 4})
    result = train(TrainConfig.model_validate(raw))
    assert result is not None
    output = Path(raw["output_dir"])
    adapter = output / "adapter"
    assert sorted(p.name for p in output.iterdir()) == ["adapter", "metrics.jsonl", "result.json"]
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {
        p.name for p in adapter.iterdir()
    }

    # The keys TGI reads: base_model.model.<module>.lora_A/B.weight, for real base modules.
    saved = load_file(adapter / "adapter_model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    modules = dict(base.named_modules())
    matches = [TGI_KEY.match(key) for key in saved]
    assert all(matches), [key for key, m in zip(saved, matches, strict=True) if not m]
    assert {m["module"] for m in matches if m} <= set(modules)
    assert {m["module"].rsplit(".", 1)[1] for m in matches if m} == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"
    }  # fmt: skip
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["peft_type"]) == (4, 8, "LORA")

    # It reloads in peft with exactly those weights.
    reloaded = PeftModel.from_pretrained(base, adapter)
    for key, tensor in get_peft_model_state_dict(reloaded).items():
        torch.testing.assert_close(tensor, saved[key])

    assert result == json.loads((output / "result.json").read_text())
    assert result["steps"] == 12 and result["artifact"] == str(adapter)
    assert result["tokens_trained"] > 12 * 4 * 10
    assert sum(result["examples_per_task"].values()) == 12 * 4
    assert result["saturation_step"] in {6, 12}
    assert set(result["saturation"]) == {"sentiment", "sounds"}
    lines = metric_lines(output)
    assert [line["step"] for line in lines if "loss" in line] == [4, 8, 12]
    assert [line["step"] for line in lines if "eval" in line] == [6, 12]
    assert all(sum(line["examples_per_task"].values()) == 16 for line in lines if "loss" in line)

    # A finished run is recognised, not retrained (a retried Job is harmless).
    assert train(TrainConfig.model_validate(raw)) == result


def test_stage_two_starts_from_stage_one_adapter(train_config: Callable[..., dict]) -> None:
    stage1 = train_config("stage1", hyperparameters={"max_steps": 4})
    train(TrainConfig.model_validate(stage1))
    stage1_adapter = Path(stage1["output_dir"]) / "adapter"
    stage1_weights = load_file(stage1_adapter / "adapter_model.safetensors")

    stage2 = train_config(
        "stage2",
        hyperparameters={"max_steps": 4},
        init_adapter=str(stage1_adapter),
        sampling={"strategy": "temperature", "rates": {"sentiment": 0.5, "sounds": 0.5}},
    )
    run = Run(TrainConfig.model_validate(stage2))
    start = get_peft_model_state_dict(run.model)
    assert set(start) == set(stage1_weights)
    for key, tensor in start.items():
        torch.testing.assert_close(tensor, stage1_weights[key])
    trainable = [name for name, p in run.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)

    run.train()
    stage2_weights = load_file(Path(stage2["output_dir"]) / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(stage2_weights[k], stage1_weights[k]) for k in stage1_weights)


def test_killed_run_resumes_to_the_same_weights(train_config: Callable[..., dict]) -> None:
    """Stop after step 6 (last checkpoint: step 4), resume, compare with a straight run."""
    straight = train_config("straight")
    train(TrainConfig.model_validate(straight))

    killed = train_config("killed")
    assert train(TrainConfig.model_validate(killed), stop_after_steps=6) is None
    output = Path(killed["output_dir"])
    assert not (output / "adapter").exists() and not (output / "result.json").exists()
    assert [p.name for p in (output / "checkpoints").iterdir()] == ["step-00000004"]
    assert [line["step"] for line in metric_lines(output)] == [4]

    resumed = train(TrainConfig.model_validate(killed))
    expected = json.loads((Path(straight["output_dir"]) / "result.json").read_text())
    assert resumed is not None
    for field in ("steps", "tokens_trained", "examples_per_task"):
        assert resumed[field] == expected[field]
    assert resumed["final_loss"] == pytest.approx(expected["final_loss"], rel=1e-5)
    a = load_file(Path(straight["output_dir"]) / "adapter" / "adapter_model.safetensors")
    b = load_file(output / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)
    assert not (output / "checkpoints").exists()
    assert [line["step"] for line in metric_lines(output)] == [4, 8, 12]


def test_killed_cgc_run_resumes_to_the_same_state(train_config: Callable[..., dict]) -> None:
    """Checkpoints key the optimizer state by parameter name: CGC's experts and gates too."""
    cgc = {"method": "cgcLora", "cgc": {"expert_rank": 2}, "hyperparameters": {"max_steps": 6}}
    straight = train_config("cgc-straight", **cgc)
    train(TrainConfig.model_validate(straight))
    killed = train_config("cgc-killed", **cgc)
    assert train(TrainConfig.model_validate(killed), stop_after_steps=5) is None
    assert train(TrainConfig.model_validate(killed)) is not None
    a = load_file(Path(straight["output_dir"]) / "cgc" / STATE_FILE)
    b = load_file(Path(killed["output_dir"]) / "cgc" / STATE_FILE)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


def test_full_fine_tuning_writes_a_loadable_model(train_config: Callable[..., dict]) -> None:
    raw = train_config("full", method="full", hyperparameters={"max_steps": 3})
    result = train(TrainConfig.model_validate(raw))
    assert result is not None
    model_dir = Path(raw["output_dir"]) / "model"
    assert result["artifact"] == str(model_dir)
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    AutoModelForCausalLM.from_pretrained(model_dir)


@pytest.mark.slow
def test_sigkilled_cli_run_resumes_to_the_same_weights(
    train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    """A real kill: SIGKILL the CLI once a checkpoint exists, run it again, compare."""
    hyper = {"max_steps": 60, "checkpoint_every": 5, "log_every": 5}
    straight = train_config("straight", hyperparameters=hyper)
    train(TrainConfig.model_validate(straight))

    killed = train_config("killed", hyperparameters=hyper)
    command = [sys.executable, "-m", "mtd_trainer", "train", "--config", str(write_config(killed))]
    checkpoints = Path(killed["output_dir"]) / "checkpoints"
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 120
        while not (checkpoints.is_dir() and any(checkpoints.glob("step-*"))):
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    assert not (Path(killed["output_dir"]) / "result.json").exists()
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stderr

    a = load_file(Path(straight["output_dir"]) / "adapter" / "adapter_model.safetensors")
    b = load_file(Path(killed["output_dir"]) / "adapter" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_two_process_ddp_equals_one_process_with_the_global_batch(
    train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    """torchrun with 2 CPU processes × batch 4 makes the same update as 1 × batch 8."""
    no_dropout = {"rank": 4, "alpha": 8, "dropout": 0.0}
    single = train_config(
        "single", hyperparameters={"max_steps": 4, "batch_size": 8}, lora=no_dropout
    )
    train(TrainConfig.model_validate(single))
    ddp = train_config("ddp", hyperparameters={"max_steps": 4, "batch_size": 4}, lora=no_dropout)
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run(
        [str(torchrun), "--nproc-per-node", "2", "-m", "mtd_trainer", "train", "--config",
         str(write_config(ddp, "ddp.json"))],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads((Path(ddp["output_dir"]) / "result.json").read_text())
    assert sum(result["examples_per_task"].values()) == 4 * 8
    a = load_file(Path(single["output_dir"]) / "adapter" / "adapter_model.safetensors")
    b = load_file(Path(ddp["output_dir"]) / "adapter" / "adapter_model.safetensors")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
