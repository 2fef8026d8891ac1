"""The real trainer end to end (tiny model): the operator SIGKILLed at a Job create and
restarted, and a node lost mid-training (the Job's pod SIGKILLed after a checkpoint):
the retried pod resumes from the checkpoint (the trainer's log says so, and its metrics
continue from that step), nothing is created twice, the pipeline becomes Ready."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.support.models import build_model

from .conftest import SENTIMENT, SOUNDS, resource, wait_until, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_real_trainer_survives_operator_kill_and_node_loss(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster("c", fake=False, max_parallel=2)
    build_model(cluster.workspace / "models" / "tiny")
    write_data(cluster.workspace)
    body = resource("support", "default", [SENTIMENT, SOUNDS], stage1={"maxSteps": 20})
    cluster.arm_kill("create Job default/support-train-binary-stage1")
    cluster.start_operator()
    cluster.apply(body)

    # The operator dies right after creating the stage-1 Job; a new one takes over.
    wait_until(lambda: cluster.kills, 120, "the operator kill", cluster.operator_logs)
    wait_until(lambda: cluster.operator.poll() is not None, 10, "the operator to die")  # type: ignore[union-attr]
    cluster.start_operator()

    # Node loss: the stage-1 pod is killed once it has a checkpoint.
    job = cluster.kills[0].split("/", 1)[1]
    pattern = "artifacts/default/support/train/binary-stage1-*/checkpoints/step-*"
    checkpoints = wait_until(
        lambda: list(cluster.workspace.glob(pattern)), 180, "a stage-1 checkpoint",
        cluster.operator_logs,
    )  # fmt: skip
    stage_dir = checkpoints[0].parents[1]
    cluster.runner.kill("default", job)
    assert not (stage_dir / "result.json").exists(), "training ended before the kill"

    obj = cluster.wait_ready("support", timeout=400)
    stages = {(r["group"], r["stage"]): r for r in obj["status"]["stages"]}
    assert stages[("binary", "stage1")]["attempts"] == 2
    assert all(r["state"] == "Succeeded" for r in stages.values())
    twice = {k: n for k, n in cluster.job_adds.items() if n > 1}
    assert not twice, twice
    started = Counter(cluster.runner.started)
    assert started[f"default/{job}"] == 2
    assert {n for k, n in started.items() if k != f"default/{job}"} == {1}

    # The retried pod resumed from the checkpoint: its log says so, and the metrics have
    # one line per step (the killed run's lines after its checkpoint were dropped).
    pods = [p for p in cluster.emulator.list("v1/pods", "default")
            if p["metadata"]["labels"].get("job-name") == job]  # fmt: skip
    states = sorted(
        (p["status"]["containerStatuses"][0]["state"]["terminated"] for p in pods),
        key=lambda t: t["startedAt"],
    )
    assert [t["reason"] for t in states] == ["OOMKilled", "Completed"]  # SIGKILL, then done
    logs = [cluster.emulator.handler.pod_logs[("default", p["metadata"]["name"])] for p in pods]
    assert sum("resumed from" in text for text in logs) == 1, logs
    entries = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in entries if "eval" not in e]
    assert steps == sorted(set(steps)) and steps[-1] <= 20, steps
    result = json.loads((stage_dir / "result.json").read_text())
    assert result["steps"] == 20
    assert "Traceback" not in cluster.all_operator_logs()
