"""A training Job with N GPUs runs N data-parallel processes whose result is one process's.

The Job's own launch path (`mtd step --processes N` → torchrun) runs here on the CPU with
gloo: 2 processes against 1, on a batch of 5 (split 2 + 3, so unequal shares are covered).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file

from mtd_contract.pod import trainer_command


def run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_give_the_adapter_of_one(
    train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    hyper = {"max_steps": 4, "batch_size": 5, "batch_is_global": True}
    no_dropout = {"rank": 4, "alpha": 8, "dropout": 0.0}
    configs = {n: train_config(f"p{n}", hyperparameters=hyper, lora=no_dropout) for n in (1, 2)}
    for n, config in configs.items():
        path = str(write_config(config, f"p{n}.json"))
        command = trainer_command(sys.executable, "train", path, n)
        assert ("torch.distributed.run" in command) == (n > 1)
        run(command)
    results = {
        n: json.loads((Path(c["output_dir"]) / "result.json").read_text())
        for n, c in configs.items()
    }
    assert results[1]["examples_per_task"] == results[2]["examples_per_task"]
    assert sum(results[2]["examples_per_task"].values()) == 4 * 5
    one = load_file(Path(configs[1]["output_dir"]) / "adapter" / "adapter_model.safetensors")
    two = load_file(Path(configs[2]["output_dir"]) / "adapter" / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    moved = 0
    for key in one:
        torch.testing.assert_close(two[key], one[key], rtol=1e-4, atol=1e-6)
        moved += int(not torch.equal(one[key], torch.zeros_like(one[key])))
    assert moved == len(one)  # every tensor trained (B starts at zero)
