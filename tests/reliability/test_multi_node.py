"""A two-node training step through the operator on the emulator: the Indexed Job and its
headless Service, both pods played by the JobRunner (gloo on the CPU, the rendezvous on
127.0.0.1 instead of pod 0's DNS name), and one pod SIGKILLed once a checkpoint exists:
its peer fails with it (torchrun --max-restarts 0), the Job controller replaces each
failed index on its own, the replacements meet at a new rendezvous with the same id, and
rank 0 resumes from the checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.models import build_model

from .conftest import SENTIMENT, SOUNDS, resource, wait_until, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_two_node_step_replaces_failed_indexes_and_resumes(make_cluster, tmp_path: Path) -> None:
    cluster = make_cluster("c", fake=False, max_parallel=1)
    build_model(cluster.workspace / "models" / "tiny")
    write_data(cluster.workspace)
    nodes = {"nodes": 2, "gpusPerNode": 1}
    body = resource("support", "default", [SENTIMENT, SOUNDS], stage1={"maxSteps": 20},
                    resources=nodes)  # fmt: skip
    cluster.start_operator()
    cluster.apply(body)

    def stage1_job() -> dict | None:
        jobs = cluster.emulator.list("batch/v1/jobs", "default")
        return next((j for j in jobs if "-train-binary-stage1-" in j["metadata"]["name"]), None)

    job = wait_until(stage1_job, 120, "the stage-1 Job", cluster.operator_logs)
    name = job["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == 2
    service = cluster.emulator.get("v1/services", f"{name}-ranks", "default")
    assert service["spec"]["clusterIP"] == "None"
    assert service["metadata"]["ownerReferences"][0]["name"] == "support"

    pattern = "artifacts/default/support/train/binary-stage1-*/checkpoints/step-*"
    checkpoints = wait_until(
        lambda: list(cluster.workspace.glob(pattern)), 400, "a stage-1 checkpoint",
        cluster.operator_logs,
    )  # fmt: skip
    stage_dir = checkpoints[0].parents[1]
    cluster.runner.kill_pod("default", name, 1)
    assert not (stage_dir / "result.json").exists(), "training ended before the kill"

    obj = cluster.wait_ready("support", timeout=700)
    stages = {(r["group"], r["stage"]): r for r in obj["status"]["stages"]}
    assert all(r["state"] == "Succeeded" for r in stages.values())
    pods = [p for p in cluster.emulator.list("v1/pods", "default")
            if p["metadata"]["labels"].get("job-name") == name]  # fmt: skip
    by_index: dict[str, list[dict]] = {}
    for pod in pods:
        index = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
        by_index.setdefault(index, []).append(pod)
    assert sorted(by_index) == ["0", "1"]

    def terminated(pod: dict) -> dict:
        return pod["status"]["containerStatuses"][0]["state"]["terminated"]

    for index, attempts in by_index.items():  # each index failed, then one pod completed
        attempts.sort(key=lambda p: terminated(p)["startedAt"])
        codes = [terminated(p)["exitCode"] for p in attempts]
        assert len(codes) >= 2 and codes[-1] == 0, (index, codes)
        assert all(code != 0 for code in codes[:-1]), (index, codes)
    retry0 = by_index["0"][-1]["metadata"]["name"]
    assert "resumed from" in cluster.emulator.handler.pod_logs[("default", retry0)]
    result = json.loads((stage_dir / "result.json").read_text())
    assert result["steps"] == 20
    assert "Traceback" not in cluster.all_operator_logs()
