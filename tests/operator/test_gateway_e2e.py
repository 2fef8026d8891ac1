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
from tests.gateway.conftest import serve_app
from tests.gateway.vllm_standin import VllmStandIn

from .clusters import NAMESPACE, EmulatedCluster
from .conftest import wait_until
from .test_operator_e2e import AGREE, MTD, SENTIMENT, SOUNDS, condition, manifest, prepare_workspace

pytestmark = [pytest.mark.operator, pytest.mark.trainer, pytest.mark.slow]


def vllm_manifest(tasks: list[dict]) -> str:
    doc = yaml.safe_load(manifest(tasks))
    doc["spec"]["serving"] = {"engine": "vllm", "replicas": 1}
    return yaml.safe_dump(doc)


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


def ready_with(cluster, tasks: int):
    obj = cluster.get(MTD, "support", NAMESPACE)
    return condition(obj, "Ready").get("status") == "True" and obj["status"]["taskCount"] == tasks


def test_vllm_adds_adapters_at_runtime_without_a_new_replicaset(
    cluster, kubectl, start_operator, tmp_path: Path
):
    if not isinstance(cluster, EmulatedCluster):
        pytest.skip("needs a hand-made serving pod: emulator only")
    prepare_workspace(cluster.workspace)
    standin = VllmStandIn("base", {}, runtime_lora_updating=True)
    with serve_app(standin.app()) as url:
        add_serving_pod(cluster, int(url.rsplit(":", 1)[1]))
        operator = start_operator()
        log = Path(operator.log_path)

        kubectl("apply", "-f", "-", input=vllm_manifest([SENTIMENT, SOUNDS]))
        wait_until(lambda: ready_with(cluster, 2), 400, "Ready with 2 tasks", log)
        first = dict(standin.loras)
        assert {name.rsplit("-", 1)[0] for name in first} == {"binary", "generation"}
        serving = cluster.get("apps/v1/deployments", "support-serving", NAMESPACE)
        template = json.dumps(serving["spec"]["template"], sort_keys=True)
        status = cluster.get(MTD, "support", NAMESPACE)["status"]["serving"]
        assert status["adapterUpdate"] == "RuntimeLoad"
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
        modules = cluster.get("v1/configmaps", "support-adapters", NAMESPACE)["data"]
        assert next(iter(added)) in modules["lora-modules"]

        # The catalogue the operator wrote routes the new task to the new adapter.
        catalogue = cluster.get("v1/configmaps", "support-catalogue", NAMESPACE)["data"]
        path = tmp_path / "catalogue.json"
        path.write_text(catalogue["catalogue.json"], encoding="utf-8")
        gateway = build_gateway(str(path), url, engine="vllm", base_model="base")
        with TestClient(gateway.app) as client:
            answer = client.post("/tasks/agree", json={"text": "do you agree?"}).json()
        assert answer["adapter"] in added and answer["output"] in ("yes", "no")
        assert "Traceback" not in log.read_text(), log.read_text()[-4000:]
