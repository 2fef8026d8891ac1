"""Trainer Job failures on the emulator (FAKE trainer, fake_mtd.py): retries up to the
limit with the reason in status, OOM kills reported as such, a transient failure retried
to success, a Job deleted by hand recreated. Node loss with the real trainer (resume
from the checkpoint) is in test_real_trainer.py."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from .conftest import ALL_TASKS, condition, precomputed_profiles, resource, wait_until, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

BACKOFF_LIMIT = 2  # OperatorConfig.job_backoff_limit's default


def stage(obj: dict, group: str, name: str) -> dict:
    return next(r for r in obj["status"]["stages"] if r["group"] == group and r["stage"] == name)


def test_failing_and_oom_killed_pods_exhaust_retries_with_the_reason(
    make_cluster, tmp_path: Path
) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("c", profiles=precomputed_profiles(ws, ALL_TASKS))
    runner = cluster.runner
    runner.fail_next(r"-train-binary-stage1-", exit_code=1, reason="Error",
                     message="RuntimeError: CUDA error: device-side assert", times=99)  # fmt: skip
    runner.fail_next(r"-train-generation-stage2-", exit_code=137, reason="OOMKilled",
                     message="", times=99)  # fmt: skip
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))

    def failed():
        obj = cluster.get("support")
        trained = condition(obj, "Trained")
        message = trained.get("message", "")
        if "CUDA error" in message and "OOMKilled" in message:
            return obj
        return None

    obj = wait_until(
        failed, 60, "Trained=False with both failures",
        lambda: str(condition(cluster.get("support"), "Trained")),
    )  # fmt: skip
    message = condition(obj, "Trained")["message"]
    assert "CUDA error: device-side assert" in message, message
    assert "OOMKilled (exit 137)" in message, message
    assert re.search(r"last pod support-train-generation-stage2-\S+: OOMKilled", message), message
    assert "BackoffLimitExceeded" in message
    ready = condition(obj, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Failed")
    assert stage(obj, "binary", "stage1")["attempts"] == BACKOFF_LIMIT + 1
    assert stage(obj, "binary", "stage1")["state"] == "Failed"
    assert stage(obj, "generation", "stage2")["state"] == "Failed"
    assert stage(obj, "binary", "stage2")["message"] == "blocked by a failed step"
    started = Counter(name.split("/", 1)[1] for name in runner.started)
    stage1 = next(n for n in started if "-train-binary-stage1-" in n)
    assert started[stage1] == BACKOFF_LIMIT + 1
    assert not any("-binary-stage2-" in n or "-eval-binary-" in n for n in started)
    assert cluster.get("support")["status"].get("serving") is None  # type: ignore[index]
    # The Event follows the status patch in the same pass: under load it can lag a little.
    wait_until(
        lambda: any(
            e["reason"] == "TrainingFailed" and e["type"] == "Warning"
            for e in cluster.emulator.list("v1/events", "default")
        ),
        30, "a TrainingFailed Warning Event",
    )  # fmt: skip
    cluster.assert_no_duplicates(pod_retries=True)


def test_transient_failure_and_job_deleted_by_hand(make_cluster, tmp_path: Path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("c", profiles=precomputed_profiles(ws, ALL_TASKS))
    runner, emu = cluster.runner, cluster.emulator
    runner.fail_next(r"-train-binary-stage1-", exit_code=1, message="flaky node", times=1)
    runner.pause(r"-eval-generation-")
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))

    def eval_job():
        return next(
            (j["metadata"]["name"] for j in emu.list("batch/v1/jobs", "default")
             if "-eval-generation-" in j["metadata"]["name"]), None,
        )  # fmt: skip

    name = wait_until(eval_job, 60, "the generation evaluation Job", cluster.operator_logs)
    emu.delete("batch/v1/jobs", name, "default", propagation="Background")
    runner.resume()
    obj = cluster.wait_ready("support", timeout=90)
    assert cluster.job_adds[f"default/{name}"] == 2  # recreated once, not more
    assert stage(obj, "binary", "stage1")["attempts"] == 2
    assert stage(obj, "binary", "stage1")["state"] == "Succeeded"
    assert all(row["state"] == "Succeeded" for row in obj["status"]["stages"])
    others = {k: n for k, n in cluster.job_adds.items() if not k.endswith(name)}
    assert set(others.values()) == {1}
