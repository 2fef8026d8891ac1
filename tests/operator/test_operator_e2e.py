"""The operator end to end: apply → Jobs in order → serving → Ready; add a task → only
its group retrains; delete → children gone. On the API emulator, or on a real cluster
(tests/operator/clusters.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mtd_operator.labels import LABEL_DEPLOYMENT
from tests.support.models import build_model
from tests.support.rbac_needs import OPERATOR_NEEDS
from tests.support.tiny_tasks import (
    SOUND_SENTIMENT,
    task,
    tiny_resource,
    write_composition_data,
    write_task_data,
)

from .clusters import NAMESPACE
from .conftest import wait_until

pytestmark = pytest.mark.slow

MTD = "multitask.dev/v1alpha1/multitaskdeployments"


def prepare_workspace(workspace: Path) -> None:
    build_model(workspace / "models" / "tiny")
    write_task_data(workspace)
    write_composition_data(workspace)


SENTIMENT = task("sentiment", "classification", labels=["pos", "neg"], baseline={"score": 0.5})
SOUNDS = task("sounds", "generation", metric="exactMatch", baseline={"score": 0.5})
AGREE = task("agree", "classification", labels=["yes", "no"], baseline={"score": 0.5})


def manifest(tasks: list[dict], compositions: list[dict] | None = None, **training: object) -> str:
    """Served by TGI: on the emulator no pod serves, and TGI's path (a rollout the
    emulator's Deployment controller plays) is the one it can run whole. vLLM's runtime
    loads: test_gateway_e2e.py (a stand-in pod) and tests/engine (the real vLLM)."""
    metadata = {"name": "support", "namespace": NAMESPACE}
    doc = tiny_resource(tasks, metadata=metadata, compositions=compositions, **training)
    doc["spec"]["serving"] = {"engine": "tgi"}
    return yaml.safe_dump(doc)


def condition(obj: dict | None, type_: str) -> dict:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return cond
    return {}


def jobs(cluster) -> list[dict]:
    return cluster.list("batch/v1/jobs", NAMESPACE)


def test_apply_train_serve_add_task_delete(cluster, kubectl, start_operator):
    prepare_workspace(cluster.workspace)
    operator = start_operator()
    log = Path(operator.log_path)

    kubectl("apply", "-f", "-", input=manifest([SENTIMENT, SOUNDS]))
    kubectl("wait", "--for=condition=Ready", "mtd/support", "--timeout=400s", timeout=420)

    obj = cluster.get(MTD, "support", NAMESPACE)
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Planned": "True", "Trained": "True", "Evaluated": "True",
        "Qualified": condition(obj, "Qualified")["status"], "Serving": "True", "Ready": "True",
        "EvalSufficient": "False",  # a few eval examples: verdicts stay Inconclusive
    }  # fmt: skip
    assert {row["verdict"] for row in status["tasks"]} <= {"Inconclusive"}
    rows = {row["name"]: row for row in status["tasks"]}
    assert set(rows) == {"sentiment", "sounds"}
    assert all(row["score"] is not None and row["baseline"] == 0.5 for row in rows.values())
    assert status["cost"]["singleTaskDeployments"] == 2
    # kopf keeps no copy of the spec (its diff base) in an annotation: with kubectl's
    # own copy, that would cap a spec at half the API server's 256 KiB of annotations.
    annotations = obj["metadata"].get("annotations") or {}
    assert not [key for key in annotations if key.endswith("/last-handled-configuration")]

    # Jobs: profile first; binary stage 1 before stage 2; evaluations after training.
    order = cluster.started_jobs()
    assert order[0].startswith("support-profile-")
    assert order.index(next(n for n in order if "binary-stage1" in n)) < order.index(
        next(n for n in order if "binary-stage2" in n)
    )
    assert len(order) == len(set(order)), "a Job ran twice"

    deployment = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    adapters = dict(pair.split("=", 1) for pair in env["LORA_ADAPTERS"].split(","))
    assert set(adapters) == {"binary", "generation"}
    for path in adapters.values():
        assert (cluster.local(path) / "adapter_model.safetensors").exists()
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    printed = kubectl("get", "mtd").stdout
    assert "support" in printed and "True" in printed

    # Add a low-resource binary task: only the binary group retrains, from stage 2; and a
    # composition of two tasks: composed from their adapters, evaluated, served.
    before = set(cluster.started_jobs())
    kubectl("apply", "-f", "-", input=manifest([SENTIMENT, SOUNDS, AGREE], [SOUND_SENTIMENT]))
    wait_until(
        lambda: condition(cluster.get(MTD, "support", NAMESPACE), "Ready").get("status") == "True"
        and cluster.get(MTD, "support", NAMESPACE)["status"]["taskCount"] == 3,
        400, "Ready after adding a task", log,
    )  # fmt: skip
    new = [name for name in cluster.started_jobs() if name not in before]
    trainers = [n for n in new if "-train-" in n]
    assert trainers and all("-binary-stage2-" in n for n in trainers), new
    deployment = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["LORA_ADAPTERS"] != ",".join(f"{k}={v}" for k, v in adapters.items())
    composed = [n for n in new if n.startswith("support-compose-")]
    assert len(composed) == 2, new  # the merge (with calibration) and its evaluation
    served = dict(pair.split("=", 1) for pair in env["LORA_ADAPTERS"].split(","))
    assert set(served) == {"binary", "generation", "sound-sentiment"}
    assert (cluster.local(served["sound-sentiment"]) / "adapter_model.safetensors").exists()
    (row,) = cluster.get(MTD, "support", NAMESPACE)["status"]["compositions"]
    assert row["name"] == "sound-sentiment" and row["score"] is not None

    # Delete: owner references take every child with it.
    kubectl("delete", "mtd", "support", "--wait=true", timeout=60)
    wait_until(lambda: not jobs(cluster), 30, "Jobs to be collected", log)
    assert cluster.try_get("apps/v1/deployments", "support-serving", NAMESPACE) is None
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
    assert json.loads(json.dumps(status))  # status is plain JSON

    # Least privilege: every call the operator made is granted, and every granted verb
    # is used, except those of paths a healthy run does not take (covered by
    # tests/reliability: failed Jobs, results lost).
    used = cluster.api_calls()
    if used is None:
        return  # a real cluster: its own RBAC and audit log are the check
    # Children are watched through a server-side label selector, not all cluster-wide.
    selectors = cluster.watch_selectors()
    for plural in ("jobs", "configmaps", "deployments"):
        assert selectors[plural] == {LABEL_DEPLOYMENT}, selectors
    # No strategic merge patch (it merges lists by key, keeping what a rendering dropped).
    assert cluster.patch_types() <= {
        "application/merge-patch+json",
        "application/json-patch+json",
    }, cluster.patch_types()
    granted = {
        (need.api_group, need.resource, verb)
        for need in OPERATOR_NEEDS
        if need.called and need.router is None  # this run routes through the gateway
        for verb in need.verbs
    }
    failure_paths = {("batch", "jobs", "delete"), ("", "pods", "list")}
    # vLLM's API key (TGI has none): created in test_gateway_e2e.py, patched on a conflict
    failure_paths |= {("", "secrets", "create"), ("", "secrets", "patch")}
    assert used - granted == set(), f"calls without a grant: {sorted(used - granted)}"
    assert granted - used - failure_paths == set(), f"never used: {sorted(granted - used)}"


def test_cgc_lora_through_jobs_serves_one_adapter_per_task(cluster, kubectl, start_operator):
    """training.method cgcLora through the operator: stage 2 continues from stage 1's
    experts, each task is evaluated and served by its own exported LoRA adapter."""
    prepare_workspace(cluster.workspace)
    operator = start_operator()
    cgc = {"commonExperts": 1, "specificExperts": 1, "expertRank": 2}
    kubectl("apply", "-f", "-", input=manifest([SENTIMENT, SOUNDS, AGREE], None,
                                                method="cgcLora", cgcLora=cgc))  # fmt: skip
    kubectl("wait", "--for=condition=Ready", "mtd/support", "--timeout=400s", timeout=420)
    status = cluster.get(MTD, "support", NAMESPACE)["status"]
    rows = {row["name"]: row for row in status["tasks"]}
    assert all(row["score"] is not None for row in rows.values())
    assert {row["adapter"] for row in rows.values()} == {"sentiment", "sounds", "agree"}
    deployment = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
    env = {
        e["name"]: e["value"]
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    served = dict(pair.split("=", 1) for pair in env["LORA_ADAPTERS"].split(","))
    assert set(served) == {"sentiment", "sounds", "agree"}
    for name, path in served.items():
        config = json.loads((cluster.local(path) / "adapter_config.json").read_text())
        # (1 + 1) × 2 = 4, zero-padded to 16, TGI's smallest kernel rank
        assert config["peft_type"] == "LORA" and config["r"] == 16, name
    assert "Traceback" not in Path(operator.log_path).read_text()


def test_full_fine_tuning_through_jobs_serves_the_model_itself(cluster, kubectl, start_operator):
    """training.method full through the operator: stage 2 and evaluation Jobs read the
    model the trainer wrote, and the serving Deployment runs that model, no adapters."""
    prepare_workspace(cluster.workspace)
    operator = start_operator()
    doc = yaml.safe_load(manifest([SENTIMENT, SOUNDS], None, method="full"))
    doc["spec"]["filtering"] = {"strategy": "none"}
    kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    kubectl("wait", "--for=condition=Ready", "mtd/support", "--timeout=400s", timeout=420)
    status = cluster.get(MTD, "support", NAMESPACE)["status"]
    rows = {row["name"]: row for row in status["tasks"]}
    assert all(row["score"] is not None for row in rows.values())
    (group,) = {row["group"] for row in rows.values()}
    container = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)["spec"][
        "template"
    ]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "LORA_ADAPTERS" not in env
    model = container["args"][container["args"].index("--model-id") + 1]
    assert model.endswith("/model") and f"/{group}-" in model
    assert (cluster.local(model) / "config.json").exists()
    assert (cluster.local(model) / "model.safetensors").exists()
    assert "Traceback" not in Path(operator.log_path).read_text()
