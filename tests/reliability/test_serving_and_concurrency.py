"""A rollout that never becomes ready; two namespaces with the same names; 100 resources
at once. Jobs run the FAKE trainer (fake_mtd.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from .conftest import (
    AGREE,
    ALL_TASKS,
    SENTIMENT,
    SOUNDS,
    condition,
    precomputed_profiles,
    resource,
    strip_times,
    wait_until,
    write_data,
)

pytestmark = pytest.mark.slow

OWNER = "multitask.dev/deployment"


@pytest.mark.timeout(200)
def test_unready_rollout_keeps_the_old_revision_and_says_why(make_cluster, tmp_path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster("c", profiles=precomputed_profiles(ws, ALL_TASKS))
    emu = cluster.emulator
    cluster.start_operator()
    cluster.apply(resource("support", "default", [SENTIMENT, SOUNDS]))
    first = cluster.wait_ready("support")
    old_revision = first["status"]["serving"]["revision"]
    cluster.deployments.hold_unready("support-serving", revision=2)

    cluster.apply(resource("support", "default", [SENTIMENT, SOUNDS, AGREE]))

    def stuck():
        obj = cluster.get("support")
        serving = condition(obj, "Serving")
        if "rollout stuck" in serving.get("message", ""):
            return obj
        return None

    obj = wait_until(stuck, 90, "Serving=False: rollout stuck", cluster.operator_logs)
    serving = condition(obj, "Serving")
    assert (serving["status"], serving["reason"]) == ("False", "RollingOut")
    assert "previous revision keeps serving" in serving["message"]
    assert obj["status"]["serving"]["revision"] != old_revision
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "Trained")["status"] == "True"
    deployment = emu.get("apps/v1/deployments", "support-serving", "default")
    assert deployment["status"]["availableReplicas"] >= 1  # the old pods still serve
    assert condition(deployment, "Available")["status"] == "True"
    # The gateway's catalogue stays on the revision the old pods serve (a real TGI would
    # answer the new adapters' names with its base model, silently).
    assert catalogue_revision(emu) == old_revision

    cluster.deployments.release()
    obj = cluster.wait_ready("support", timeout=60)
    assert condition(obj, "Serving")["reason"] == "Serving"
    assert "agree" in {row["name"] for row in obj["status"]["tasks"]}
    wait_until(
        lambda: catalogue_revision(emu) == obj["status"]["serving"]["revision"],
        30, "the catalogue on the new revision", cluster.operator_logs,
    )  # fmt: skip


def catalogue_revision(emu) -> str:
    cm = emu.get("v1/configmaps", "support-catalogue", "default")
    return json.loads(cm["data"]["catalogue.json"])["revision"]


@pytest.mark.timeout(200)
def test_same_names_in_two_namespaces_do_not_interfere(make_cluster, tmp_path: Path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster(
        "c", profiles=precomputed_profiles(ws, ALL_TASKS), namespaces=("team-a", "team-b")
    )
    emu = cluster.emulator
    cluster.start_operator()
    cluster.apply(resource("support", "team-a", ALL_TASKS))
    cluster.apply(resource("support", "team-b", [SENTIMENT, SOUNDS]))
    a = cluster.wait_ready("support", "team-a")
    b = cluster.wait_ready("support", "team-b")
    assert [r["name"] for r in a["status"]["tasks"]] == ["sentiment", "sounds", "agree"]
    assert [r["name"] for r in b["status"]["tasks"]] == ["sentiment", "sounds"]
    assert a["status"]["serving"]["endpoint"].endswith(".team-a.svc")
    assert b["status"]["serving"]["endpoint"].endswith(".team-b.svc")
    for ns, obj in (("team-a", a), ("team-b", b)):
        uid = obj["metadata"]["uid"]
        for ref in ("batch/v1/jobs", "v1/configmaps", "apps/v1/deployments"):
            for child in emu.list(ref, ns):
                owners = child["metadata"].get("ownerReferences") or []
                if ref == "v1/configmaps" and not owners:
                    continue  # kube-root-ca.crt and the like
                assert [o["uid"] for o in owners] == [uid], (ns, child["metadata"]["name"])
        trainer_paths = {
            e["output"] for e in cluster.fake_log() if f"/artifacts/{ns}/support/" in e["output"]
        }
        assert trainer_paths  # each resource writes under its own namespace's folder
    assert len(emu.list("batch/v1/jobs", "team-a")) == 8
    assert len(emu.list("batch/v1/jobs", "team-b")) == 6
    cluster.assert_no_duplicates()


@pytest.mark.timeout(500)
def test_hundred_resources_at_once(make_cluster, tmp_path: Path) -> None:
    ws = tmp_path / "c" / "workspace"
    ws.mkdir(parents=True)
    write_data(ws)
    cluster = make_cluster(
        "c",
        profiles=precomputed_profiles(ws, ALL_TASKS),
        namespaces=("many",),
        max_parallel=6,
        step_seconds=0.05,
    )
    cluster.start_operator()
    names = [f"r{i:03d}" for i in range(100)]
    started = time.monotonic()
    for i, name in enumerate(names):  # 1 group each (3 Jobs), every 10th 2 groups (6 Jobs)
        tasks = [SOUNDS, SENTIMENT] if i % 10 == 0 else [SOUNDS]
        cluster.apply(resource(name, "many", tasks))
    first_job = wait_until(lambda: cluster.runner.started and time.monotonic(), 60, "a first Job")
    pending = set(names)
    deadline = time.monotonic() + 400
    while pending and time.monotonic() < deadline:
        pending = {n for n in pending if not cluster.ready(n, "many")}
        time.sleep(1)
    assert not pending, f"{len(pending)} not Ready: {sorted(pending)[:5]}"
    elapsed = time.monotonic() - started
    statuses = {n: strip_times(cluster.get(n, "many")["status"]) for n in names}  # type: ignore
    for i, name in enumerate(names):
        rows = statuses[name]["tasks"]
        assert [r["name"] for r in rows] == (["sounds", "sentiment"] if i % 10 == 0 else ["sounds"])
        assert statuses[name]["serving"]["endpoint"] == f"http://{name}-serving.many.svc"
    for job in cluster.emulator.list("batch/v1/jobs", "many"):
        parent = job["metadata"]["labels"][OWNER]
        assert job["metadata"]["name"].startswith(parent + "-")
    cluster.assert_no_duplicates()
    print(f"\n100 resources Ready in {elapsed:.0f} s (first Job after "
          f"{first_job - started:.1f} s); {len(cluster.runner.started)} Jobs")  # fmt: skip
