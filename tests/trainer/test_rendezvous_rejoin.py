"""Replaced pods of a multi-node step meet again at the rendezvous.

The Job controller replaces each failed index of an Indexed Job on its own, so after one
pod is lost the replacements start at different times: pod 1's replacement can start
while pod 0 still runs (and then fails with its peer under `--max-restarts 0`), and pod
0's replacement only later, hosting a new rendezvous store at the same address. Both use
the step's `--rdzv-id`. Here the pods run the rendezvous exactly as `trainer_command`
launches it, with a small gloo workload in place of the trainer (tests/trainer/
test_multi_node.py does the same with the real trainer, both pods replaced together).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtd_contract.pod import TRAINER_MODULE, Rendezvous, trainer_command
from tests.support.net import free_port

from .test_multi_node import ENV, kill_pod

pytestmark = pytest.mark.slow

WORKLOAD = """
import os, time
import torch, torch.distributed as dist
dist.init_process_group("gloo")
for _ in range(int(os.environ["STEPS"])):
    tensor = torch.ones(64)
    dist.all_reduce(tensor)
    assert tensor[0].item() == dist.get_world_size()
    time.sleep(0.02)
print(f"rank {dist.get_rank()} of {dist.get_world_size()} done", flush=True)
dist.destroy_process_group()
"""


def start_pod(rank: int, endpoint: str, script: Path, steps: int) -> subprocess.Popen[str]:
    command = trainer_command(
        sys.executable, "train", "config.json", 1, Rendezvous(2, rank, endpoint, "step-a1b2")
    )
    module = command.index(TRAINER_MODULE)  # the trainer: `-m mtd_trainer train --config ..`
    command = [*command[: module - 1], str(script)]
    return subprocess.Popen(
        command, env={**ENV, "STEPS": str(steps)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip


def test_pod_1_replaced_before_pod_0_fails_rejoins_pod_0s_replacement(tmp_path: Path) -> None:
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD)
    endpoint = f"127.0.0.1:{free_port()}"
    pod0, pod1 = (start_pod(rank, endpoint, script, steps=100_000) for rank in (0, 1))
    time.sleep(6)  # rendezvous done, collectives running
    assert pod0.poll() is None and pod1.poll() is None
    kill_pod(pod1)
    pod1.wait()
    replacement1 = start_pod(1, endpoint, script, steps=50)  # pod 0 may still be alive
    assert pod0.wait(timeout=120) != 0, "pod 0 must fail with its peer (--max-restarts 0)"
    time.sleep(2)  # the Job controller's backoff before pod 0's replacement
    replacement0 = start_pod(0, endpoint, script, steps=50)
    outputs = [p.communicate(timeout=300)[0] for p in (replacement0, replacement1)]
    assert replacement0.returncode == 0, outputs[0][-3000:]
    assert replacement1.returncode == 0, outputs[1][-3000:]
    assert "rank 0 of 2 done" in outputs[0] + outputs[1]
    assert "rank 1 of 2 done" in outputs[0] + outputs[1]
