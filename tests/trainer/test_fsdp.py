"""FSDP (strategy fsdp) on 2 CPU processes with gloo: it trains, evaluates at intervals,
checkpoints (gathered on rank 0), resumes into the shards, and exports the adapter (or
model) DDP exports, within tolerance. The run is interrupted twice and switches strategy
each time (fsdp → ddp → fsdp), as a changed `training.resources` does: checkpoints are
the same whichever strategy wrote them.

On this CPU host torch's `fully_shard` shards (accelerate's FSDP plugin needs an
accelerator; `sharding.py`); accelerate's own FSDP2 path on CUDA is not run here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mtd_contract.pod import trainer_command
from mtd_trainer.sharding import sharder

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Under torchrun: train to `stop` steps and return, as a killed run leaves its checkpoint.
STOPPING = """
import logging
import sys
logging.basicConfig(level=logging.INFO)
from mtd_contract.config import TrainConfig
from mtd_trainer.training import train
config = TrainConfig.model_validate_json(open(sys.argv[1]).read())
assert train(config, stop_after_steps=int(sys.argv[2])) is None
"""


def run(command: list[str]) -> str:
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-8000:]
    return proc.stderr


def two_processes(script: Path, *args: str) -> list[str]:
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    return [sys.executable, *launcher, str(script), *args]


def test_sharder_decides_who_shards() -> None:
    assert sharder("ddp", cuda=True, processes=8) == "none"
    assert sharder("fsdp", cuda=False, processes=1) == "none"
    assert sharder("fsdp", cuda=True, processes=2) == "accelerate"
    assert sharder("fsdp", cuda=False, processes=2) == "torch"
    with pytest.raises(ValueError, match="strategy: 'zero3' is unknown; allowed: ddp, fsdp"):
        sharder("zero3", cuda=False, processes=2)


def compare_ddp_and_fsdp(
    method: str,
    artifact: str,
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    tmp_path: Path,
) -> tuple[dict, dict]:
    hyper = {"max_steps": 4, "batch_size": 4, "batch_is_global": True, "checkpoint_every": 1,
             "eval_every": 2, "eval_max_examples": 4, "eval_max_new_tokens": 4}  # fmt: skip
    extra: dict = {"lora": {"rank": 4, "alpha": 8, "dropout": 0.0}, "method": method}
    if method == "full":
        hyper["learning_rate"] = 1e-3
    ddp = train_config("ddp", hyperparameters=hyper, **extra)
    fsdp = train_config("fsdp", hyperparameters=hyper, strategy="fsdp", **extra)
    run(trainer_command(sys.executable, "train", str(write_config(ddp, "ddp.json")), 2))

    script = tmp_path / "stopping.py"
    script.write_text(STOPPING, encoding="utf-8")
    fsdp_path = write_config(fsdp, "fsdp.json")
    run(two_processes(script, str(fsdp_path), "2"))  # stops after its step-2 checkpoint
    checkpoints = Path(fsdp["output_dir"]) / "checkpoints"
    state = torch.load(checkpoints / "step-00000002" / "state.pt", weights_only=True)
    assert state["optimizer"]["state"] and all(
        isinstance(k, str) for k in state["optimizer"]["state"]
    )
    # The same run's output folder continued under ddp for one step, then fsdp again.
    as_ddp = write_config({**fsdp, "strategy": "ddp"}, "fsdp-as-ddp.json")
    assert "resumed from" in run(two_processes(script, str(as_ddp), "3"))
    assert (checkpoints / "step-00000003").is_dir()
    assert "resumed from" in run(trainer_command(sys.executable, "train", str(fsdp_path), 2))

    results = [json.loads((Path(c["output_dir"]) / "result.json").read_text()) for c in (ddp, fsdp)]
    assert results[0]["examples_per_task"] == results[1]["examples_per_task"]
    assert results[0]["final_scores"] == results[1]["final_scores"]  # interval evaluation
    metrics = (Path(fsdp["output_dir"]) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in metrics if "eval" in line] == [2, 4]
    a = load_file(Path(ddp["output_dir"]) / artifact)
    b = load_file(Path(fsdp["output_dir"]) / artifact)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    return ddp, fsdp


def test_fsdp_lora_trains_checkpoints_resumes_and_exports_the_ddp_adapter(
    train_config: Callable[..., dict], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    ddp, _ = compare_ddp_and_fsdp(
        "lora", "adapter/adapter_model.safetensors", train_config, write_config, tmp_path
    )
    adapter = load_file(Path(ddp["output_dir"]) / "adapter/adapter_model.safetensors")
    assert all(not torch.equal(t, torch.zeros_like(t)) for t in adapter.values())  # trained


@pytest.mark.slow
def test_fsdp_full_trains_checkpoints_resumes_and_exports_the_ddp_model(
    train_config: Callable[..., dict],
    write_config: Callable[..., Path],
    tmp_path: Path,
    tiny_model: Path,
) -> None:
    ddp, _ = compare_ddp_and_fsdp(
        "full", "model/model.safetensors", train_config, write_config, tmp_path
    )
    base = load_file(tiny_model / "model.safetensors")
    trained = load_file(Path(ddp["output_dir"]) / "model/model.safetensors")
    assert any(not torch.equal(trained[k], base[k]) for k in base if k in trained)
