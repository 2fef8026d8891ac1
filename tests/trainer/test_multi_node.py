"""A training step on two nodes: two pods of an Indexed Job, each running torchrun with
its node rank, meeting at a c10d rendezvous on pod 0.

Here both "pods" are local processes launched with the Job's own command (`trainer_command`
with a `Rendezvous`), gloo on the CPU, and the rendezvous on 127.0.0.1 instead of pod 0's DNS
name (the one difference from a cluster). One process per node; the batch is split
between them, so the adapter is one process's. Killing one pod mid-step fails the other
(torchrun --max-restarts 0); running both again, as the Job's retry does, resumes from
the last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from mtd_contract.pod import Rendezvous, trainer_command
from tests.support.net import free_port

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def start_pods(config: Path, run_id: str) -> list[subprocess.Popen[str]]:
    """Both pods of the step, each in its own process group (a pod is killed whole)."""
    endpoint = f"127.0.0.1:{free_port()}"
    pods = []
    for rank in (0, 1):
        command = trainer_command(
            sys.executable, "train", str(config), 1, Rendezvous(2, rank, endpoint, run_id)
        )
        assert command[command.index("--node-rank") + 1] == str(rank)
        pods.append(
            subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        )  # fmt: skip
    return pods


def kill_pod(pod: subprocess.Popen[str]) -> None:
    """SIGKILL every process of a pod, as the kubelet does (torchrun puts its workers in
    sessions of their own, so the process group alone is not the pod)."""
    children = psutil.Process(pod.pid).children(recursive=True)
    os.killpg(pod.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def finish(pods: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    out = []
    for pod in pods:
        _, err = pod.communicate(timeout=900)
        out.append((pod.returncode, err))
    return out


def adapter(config: dict) -> dict[str, torch.Tensor]:
    return load_file(Path(config["output_dir"]) / "adapter" / "adapter_model.safetensors")


def test_two_nodes_rendezvous_and_give_the_adapter_of_one_process(
    train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    hyper = {"max_steps": 4, "batch_size": 4, "batch_is_global": True}
    no_dropout = {"rank": 4, "alpha": 8, "dropout": 0.0}
    one = train_config("one", hyperparameters=hyper, lora=no_dropout)
    two = train_config("two", hyperparameters=hyper, lora=no_dropout)
    command = trainer_command(sys.executable, "train", str(write_config(one, "one.json")), 1)
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for code, err in finish(start_pods(write_config(two, "two.json"), "two")):
        assert code == 0, err[-3000:]
    results = [json.loads((Path(c["output_dir"]) / "result.json").read_text()) for c in (one, two)]
    assert results[0]["examples_per_task"] == results[1]["examples_per_task"]
    a, b = adapter(one), adapter(two)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
        assert not torch.equal(b[key], torch.zeros_like(b[key]))  # trained


@pytest.mark.slow
def test_killing_one_pod_fails_the_attempt_and_the_retry_resumes_from_the_checkpoint(
    train_config: Callable[..., dict], write_config: Callable[..., Path]
) -> None:
    hyper = {"max_steps": 40, "batch_size": 2, "batch_is_global": True,
             "checkpoint_every": 5, "log_every": 5}  # fmt: skip
    no_dropout = {"rank": 4, "alpha": 8, "dropout": 0.0}
    straight = train_config("straight", hyperparameters=hyper, lora=no_dropout)
    killed = train_config("killed", hyperparameters=hyper, lora=no_dropout)
    command = trainer_command(sys.executable, "train", str(write_config(straight, "s.json")))
    proc = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]

    config = write_config(killed, "k.json")
    checkpoints = Path(killed["output_dir"]) / "checkpoints"
    pods = start_pods(config, "killed")
    deadline = time.monotonic() + 600
    while not (checkpoints.is_dir() and any(checkpoints.glob("step-*"))):
        assert all(p.poll() is None for p in pods) and time.monotonic() < deadline
        time.sleep(0.05)
    kill_pod(pods[1])  # pod 1 lost mid-step
    (code0, _), (code1, _) = finish(pods)
    assert code1 != 0 and code0 != 0, "pod 0 must fail with its peer: the attempt failed"
    assert not (Path(killed["output_dir"]) / "result.json").exists()

    retry = finish(start_pods(config, "killed"))  # the Job's retry: every pod again
    for code, err in retry:
        assert code == 0, err[-3000:]
    assert "resumed from" in retry[0][1]
    a, b = adapter(straight), adapter(killed)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-6)
