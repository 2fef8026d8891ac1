"""The gateway's children and vLLM's runtime adapter loading, with the real operator.

On the API emulator (no pods run there): a serving pod object is created by hand,
ready, whose container port is a vLLM stand-in (tests/gateway/vllm_standin.py) with
runtime LoRA updating on. The operator must load each adapter set into that pod through
vLLM's `/v1/load_lora_adapter`, without changing the serving Deployment's pod template
(no new ReplicaSet), and publish the catalogue only once the pod holds the set.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from mtd_operator.gateway.app import build_gateway
from mtd_operator.kube.engine_key import engine_api_key
from tests.gateway.vllm_standin import VllmStandIn
from tests.support.net import serve_app

from .clusters import NAMESPACE, EmulatedCluster
from .conftest import wait_until
from .test_operator_e2e import AGREE, MTD, SENTIMENT, SOUNDS, condition, manifest, prepare_workspace

pytestmark = pytest.mark.slow


def serving_manifest(tasks: list[dict], **serving: object) -> str:
    doc = yaml.safe_load(manifest(tasks))
    doc["spec"]["serving"] = {"engine": "tgi", "replicas": 1, **serving}
    return yaml.safe_dump(doc)


def vllm_manifest(tasks: list[dict]) -> str:
    return serving_manifest(tasks, engine="vllm")


def replica_sets(cluster: EmulatedCluster) -> str:
    """The serving Deployment's revision (one per pod template, i.e. per ReplicaSet)."""
    serving = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
    return serving["metadata"]["annotations"]["deployment.kubernetes.io/revision"]


def peak_replicas(cluster: EmulatedCluster) -> int:
    """The most pods the serving Deployment ever counted (status.replicas), from the log."""
    return max(
        (event.obj.get("status") or {}).get("replicas", 0)
        for event in cluster.emulator.store.events_after(0)
        if event.storage.plural == "deployments"
        and event.obj["metadata"]["name"] == "support-serving"
    )


def add_serving_pod(cluster: EmulatedCluster, port: int) -> None:
    """What the kubelet would show: a running, ready vLLM pod of the serving Deployment."""
    store, pods = cluster.emulator.store, cluster.emulator.resource("v1/pods")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "support-serving-0",
            "namespace": NAMESPACE,
            "labels": {"multitask.dev/deployment": "support", "multitask.dev/role": "serving"},
        },
        "spec": {
            "containers": [
                {
                    "name": "server",
                    "image": "vllm",
                    "ports": [{"name": "http", "containerPort": port}],
                }
            ]
        },
    }
    store.create(pods, NAMESPACE, pod)
    status = {
        "phase": "Running",
        "podIP": "127.0.0.1",
        "conditions": [{"type": "Ready", "status": "True"}],
    }
    store.patch(
        pods, NAMESPACE, "support-serving-0", {"status": status},
        "application/merge-patch+json", subresource="status",
    )  # fmt: skip


def verified_revisions(cluster) -> list[str]:
    """The revisions whose verification Job (mtd verify, run by the job runner from the
    trainer image's venv) completed; the operator keeps only the current one's."""
    jobs = cluster.list("batch/v1/jobs", NAMESPACE)
    return [
        j["metadata"]["annotations"]["multitask.dev/serving-revision"]
        for j in jobs
        if j["metadata"]["labels"].get("multitask.dev/role") == "verify"
        and any(c["type"] == "Complete" for c in (j.get("status") or {}).get("conditions", []))
    ]


def ready_with(cluster, tasks: int):
    obj = cluster.get(MTD, "support", NAMESPACE)
    return condition(obj, "Ready").get("status") == "True" and obj["status"]["taskCount"] == tasks


def test_vllm_adds_adapters_at_runtime_without_a_new_replicaset(
    cluster, kubectl, start_operator, tmp_path: Path
):
    if not isinstance(cluster, EmulatedCluster):
        pytest.skip("needs a hand-made serving pod: emulator only")
    prepare_workspace(cluster.workspace)
    master = tmp_path / "engine-key"
    master.write_text("s" * 48)
    standin = VllmStandIn("base", {}, runtime_lora_updating=True, api_key="not yet known")
    with serve_app(standin.app()) as url:
        add_serving_pod(cluster, int(url.rsplit(":", 1)[1]))
        operator = start_operator(MTD_ENGINE_KEY_FILE=str(master))
        log = Path(operator.log_path)

        kubectl("apply", "-f", "-", input=vllm_manifest([SENTIMENT, SOUNDS]))
        # The pod holds its resource's key (from the Secret the operator writes): the
        # operator must load adapters with it; until then its loads are refused (401).
        uid = wait_until(lambda: (cluster.get(MTD, "support", NAMESPACE) or {}).get(
            "metadata", {}).get("uid"), 30, "the resource's uid", log)  # fmt: skip
        standin.api_key = engine_api_key(master.read_bytes(), NAMESPACE, "support", uid)
        wait_until(lambda: ready_with(cluster, 2), 400, "Ready with 2 tasks", log)
        secret = cluster.get("v1/secrets", "support-engine-key", NAMESPACE)
        assert secret is not None and secret["metadata"]["ownerReferences"][0]["uid"] == uid
        first = dict(standin.loras)
        assert {name.rsplit("-", 1)[0] for name in first} == {"binary", "generation"}
        serving = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
        template = json.dumps(serving["spec"]["template"], sort_keys=True)
        assert replica_sets(cluster) == "1"
        status = cluster.get(MTD, "support", NAMESPACE)["status"]["serving"]
        assert status["adapterUpdate"] == "RuntimeLoad"
        # Loaded only after the revision's adapters were verified on the volume (#29).
        assert verified_revisions(cluster) == [status["revision"]]
        assert status["gateway"] == f"http://support-gateway.{NAMESPACE}.svc"
        assert cluster.get("apps/v1/deployments", "support-gateway", NAMESPACE)
        assert cluster.get("v1/services", "support-gateway", NAMESPACE)

        # Add a task: its group retrains; the new adapter is loaded into the running pod.
        kubectl("apply", "-f", "-", input=vllm_manifest([SENTIMENT, SOUNDS, AGREE]))
        wait_until(lambda: ready_with(cluster, 3), 400, "Ready with 3 tasks", log)
        added = set(standin.loras) - set(first)
        assert len(added) == 1 and next(iter(added)).startswith("binary-"), standin.loras
        serving = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
        assert json.dumps(serving["spec"]["template"], sort_keys=True) == template
        assert replica_sets(cluster) == "1"  # no new ReplicaSet
        revision = cluster.get(MTD, "support", NAMESPACE)["status"]["serving"]["revision"]
        assert verified_revisions(cluster) == [revision] != [status["revision"]]
        modules = cluster.get("v1/configmaps", "support-adapters", NAMESPACE)["data"]
        assert next(iter(added)) in modules["lora-modules"]

        # The catalogue the operator wrote routes the new task to the new adapter.
        catalogue = cluster.get("v1/configmaps", "support-catalogue", NAMESPACE)["data"]
        path = tmp_path / "catalogue.json"
        path.write_text(catalogue["catalogue.json"], encoding="utf-8")
        gateway = build_gateway(
            str(path), url, engine="vllm", base_model="base", api_key=standin.api_key
        )
        with TestClient(gateway.app) as client:
            answer = client.post("/tasks/agree", json={"text": "do you agree?"}).json()
        assert answer["adapter"] in added and answer["output"] in ("yes", "no")
        assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


def test_tgi_one_at_a_time_rolls_out_without_a_surge_pod(cluster, kubectl, start_operator):
    """TGI loads adapters only at start-up: a new set is a rollout, here one pod at a time."""
    if not isinstance(cluster, EmulatedCluster):
        pytest.skip("reads the emulator's event log")
    prepare_workspace(cluster.workspace)
    operator = start_operator()
    log = Path(operator.log_path)
    kubectl("apply", "-f", "-", input=serving_manifest([SENTIMENT, SOUNDS], rollout="oneAtATime"))
    wait_until(lambda: ready_with(cluster, 2), 400, "Ready with 2 tasks", log)
    first = cluster.get("v1/configmaps", "support-catalogue", NAMESPACE)["data"]

    three = serving_manifest([SENTIMENT, SOUNDS, AGREE], rollout="oneAtATime")
    kubectl("apply", "-f", "-", input=three)
    wait_until(lambda: ready_with(cluster, 3), 400, "Ready with 3 tasks", log)
    serving = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
    assert serving["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    assert replica_sets(cluster) == "2"  # a rollout happened ...
    assert peak_replicas(cluster) == 1  # ... and never more pods than replicas
    status = cluster.get(MTD, "support", NAMESPACE)["status"]
    assert status["serving"]["adapterUpdate"] == "OneAtATime"
    # The catalogue moved to the new revision once it was served, with the new task.
    catalogue = json.loads(
        cluster.get("v1/configmaps", "support-catalogue", NAMESPACE)["data"]["catalogue.json"]
    )
    assert (
        catalogue["revision"]
        == status["serving"]["revision"]
        != json.loads(first["catalogue.json"])["revision"]
    )
    assert "agree" in {task["name"] for task in catalogue["tasks"]}
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
