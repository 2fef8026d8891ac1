"""Changing where a step trains (`training.resources`) while its Job runs replaces the
Job, under the same deterministic name, with today's placement and config; the step's
hash (and so its output folder, and the checkpoint there) stays: nothing retrains from
scratch. A Job that already succeeded is kept. FAKE trainer (fake_mtd.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from mtd_operator.labels import ANNOTATION_PLACEMENT

from .conftest import ALL_TASKS, precomputed_profiles, resource, wait_until, write_data

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STAGE1 = r"-train-binary-stage1-"


def test_a_changed_placement_replaces_the_running_job(make_cluster, tmp_path: Path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("c", profiles=precomputed_profiles(ws, ALL_TASKS))
    runner, emu = cluster.runner, cluster.emulator
    runner.pause(STAGE1)
    cluster.start_operator()
    cluster.apply(resource("support", "default", ALL_TASKS))

    def stage1_job(strategy: str):
        def find():
            for job in emu.list("batch/v1/jobs", "default"):
                meta = job["metadata"]
                placement = (meta.get("annotations") or {}).get(ANNOTATION_PLACEMENT, "")
                deleting = meta.get("deletionTimestamp")
                ours = "-train-binary-stage1-" in meta["name"] and not deleting
                if ours and placement.endswith(f"strategy={strategy}"):
                    return job
            return None

        return find

    first = wait_until(stage1_job("ddp"), 60, "stage 1's Job", cluster.operator_logs)
    name = first["metadata"]["name"]
    moved = resource("support", "default", ALL_TASKS, resources={"strategy": "fsdp"})
    cluster.apply(moved)
    second = wait_until(stage1_job("fsdp"), 60, "stage 1's Job under fsdp", cluster.operator_logs)
    assert second["metadata"]["name"] == name  # same step, same name: only placement moved
    config = emu.get("v1/configmaps", name, "default")
    assert json.loads(config["data"]["config.json"])["strategy"] == "fsdp"
    runner.resume()
    obj = cluster.wait_ready("support", timeout=120)
    assert cluster.job_adds[f"default/{name}"] == 2
    # Other training Jobs still running then moved too; nothing else was replaced.
    training = re.compile(r"-(train|baseline)-(?!eval-)")
    others = {k: n for k, n in cluster.job_adds.items() if not training.search(k)}
    assert others and set(others.values()) == {1}
    assert max(cluster.job_adds.values()) == 2
    assert all(row["state"] == "Succeeded" for row in obj["status"]["stages"])
