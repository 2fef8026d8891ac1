"""The vLLM serving Deployment `mtd manifests` renders, run as a kubelet would (its
command, args and env; its ConfigMap files at their mount paths; uid 65532 with no passwd
entry; a workspace the trainer pods' uid wrote) on the real vLLM at the chart's release.
It must become ready and serve every adapter, and, through the task gateway, answer each
task, take a new adapter at run time, refuse an unknown task, and serve `method: full`."""

from __future__ import annotations

import json
import pwd
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mtd_operator.engines import runtime_lora
from mtd_operator.engines.base import SERVING_PORT
from mtd_operator.engines.vllm import ADAPTERS_KEY
from mtd_operator.gateway.app import build_gateway
from mtd_operator.gateway.command import GATEWAY_KEY_ENV
from tests.engine.conftest import (
    CLAIM,
    NODE_ENV,
    TRAINER_UID,
    Cluster,
    lora_resource,
    render,
    write_adapter,
    write_full_model,
)
from tests.support.kubelet import Pod, run_container

pytestmark = pytest.mark.slow


def lora_modules(cluster: Cluster) -> dict[str, str]:
    """The adapters ConfigMap's `name=path` list, as `vllm serve --lora-modules` reads it."""
    text = cluster.one("ConfigMap", "-adapters")["data"][ADAPTERS_KEY]
    return dict(pair.split("=", 1) for pair in text.split())


def start_serving(cluster: Cluster, venv: Path) -> Pod:
    template = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]
    pod = run_container(
        template,
        image_venv=venv,
        claims={CLAIM: cluster.workspace},
        config_maps=cluster.config_maps(),
        secrets=cluster.secrets(),
        node_env=NODE_ENV,
    )
    try:
        pod.wait_ready(SERVING_PORT)
    except BaseException:
        pod.stop()
        raise
    return pod


def gateway_for(cluster: Cluster, pod: Pod, catalogue: Path) -> TestClient:
    """The rendered gateway's own flags, with its upstream Service resolved to the pod (what
    the Service and kube-proxy do) and its catalogue ConfigMap written to `catalogue`."""
    container = cluster.one("Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
    flags = dict(zip(container["command"][2::2], container["command"][3::2], strict=False))
    catalogue.write_text(cluster.one("ConfigMap", "-catalogue")["data"]["catalogue.json"])
    gateway = build_gateway(
        str(catalogue),
        pod.url(SERVING_PORT),
        flags["--engine"],
        flags.get("--base-model"),
        api_key=secret_env(cluster, container).get(GATEWAY_KEY_ENV),
    )
    return TestClient(gateway.app)


def secret_env(cluster: Cluster, container: dict[str, Any]) -> dict[str, str]:
    """A container's env drawn from Secrets, as the kubelet resolves it."""
    found = {}
    for item in container.get("env", []):
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            found[item["name"]] = cluster.secrets()[ref["name"]][ref["key"]]
    return found


def engine_key(cluster: Cluster) -> str:
    server = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]["containers"][0]
    return secret_env(cluster, server)["VLLM_API_KEY"]


def served_models(pod: Pod, key: str) -> dict[str, Any]:
    answer = httpx.get(
        pod.url(SERVING_PORT) + "/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return {entry["id"]: entry for entry in answer.json()["data"]}


@pytest.fixture(scope="module")
def lora_serving(workspace, venv) -> Iterator[tuple[Cluster, Pod]]:
    """The two-adapter resource rendered and its serving pod started once for the tests
    below (a vLLM start is most of each one's time); none of them stops or restarts it."""
    cluster = render(workspace, lora_resource())
    for seed, path in enumerate(lora_modules(cluster).values()):
        write_adapter(workspace / "models" / "tiny", cluster.host(path), seed)
    with start_serving(cluster, venv) as pod:
        yield cluster, pod


def test_the_rendered_vllm_pod_serves_every_adapter_through_the_gateway(
    workspace, lora_serving, tmp_path
):
    cluster, pod = lora_serving
    modules = lora_modules(cluster)
    assert len(modules) == 2
    container = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]
    assert container["securityContext"]["runAsUser"] == TRAINER_UID
    with pytest.raises(KeyError):  # the pod's uid has no passwd entry, as in the image
        pwd.getpwuid(container["securityContext"]["runAsUser"])

    key = engine_key(cluster)
    models = served_models(pod, key)
    assert set(modules) <= set(models)  # every adapter of the catalogue, by its name
    assert all(models[name]["parent"] for name in modules)

    client = gateway_for(cluster, pod, tmp_path / "catalogue.json")
    answer = client.post("/tasks/sentiment", json={"text": "the film was good"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["output"] in {"pos", "neg"}
    assert answer.json()["adapter"] in modules
    answer = client.post("/tasks/sounds", json={"text": "the cow says", "max_new_tokens": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["adapter"] in modules

    unknown = client.post("/tasks/translate", json={"text": "hola"})
    assert unknown.status_code == 404
    assert "sentiment" in unknown.text  # it names the known tasks

    # A retrained adapter: loaded into the running pod by the operator's own code,
    # then the catalogue moves the task to it (as the controller does).
    retrained = cluster.host(modules[next(iter(modules))]).parent / "adapter-retrained"
    write_adapter(workspace / "models" / "tiny", retrained, seed=7)
    pod_path = "/workspace/" + str(retrained.relative_to(workspace))
    loaded = runtime_lora.load_into(pod.url(SERVING_PORT), {"sentiment-new": pod_path}, key)
    assert loaded == ["sentiment-new"]
    assert "sentiment-new" in served_models(pod, key)
    catalogue = json.loads((tmp_path / "catalogue.json").read_text())
    for entry in catalogue["tasks"]:
        if entry["name"] == "sentiment":
            entry["adapter"] = "sentiment-new"
    (tmp_path / "catalogue.json").write_text(json.dumps(catalogue))
    answer = client.post("/tasks/sentiment", json={"text": "an awful day"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["adapter"] == "sentiment-new"
    assert answer.json()["output"] in {"pos", "neg"}
    assert re.search(r"vLLM API server version|vllm", pod.logs())


def test_only_the_operator_and_the_gateway_reach_the_engines_admin_routes(workspace, lora_serving):
    """vLLM 0.32 with runtime LoRA updating serves POST /v1/load_lora_adapter and
    /v1/unload_lora_adapter, and SageMaker's POST /adapters and DELETE /adapters/{name}.
    The API key from the resource's Secret closes the /v1 ones on the engine itself; the
    others are outside the prefixes vLLM guards, so the rendered NetworkPolicy admits only
    the resource's gateway pods and the operator's pods to the serving port."""
    cluster, pod = lora_serving
    modules = lora_modules(cluster)
    adapter = "/workspace/" + str(cluster.host(next(iter(modules.values()))).relative_to(workspace))
    url = pod.url(SERVING_PORT)
    body = {"lora_name": "intruder", "lora_path": adapter}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert (
            httpx.post(f"{url}/v1/load_lora_adapter", json=body, headers=headers).status_code == 401
        )
        assert httpx.post(f"{url}/v1/unload_lora_adapter", json={"lora_name": "x"},
                          headers=headers).status_code == 401  # fmt: skip
        assert httpx.get(f"{url}/v1/models", headers=headers).status_code == 401
    with pytest.raises(runtime_lora.LoadError, match="401"):
        runtime_lora.load_into(url, {"intruder": adapter})  # the operator without the key
    assert "intruder" not in served_models(pod, engine_key(cluster))
    # Outside vLLM's guarded prefixes: open to whoever reaches the port.
    sagemaker = httpx.post(f"{url}/adapters", json={"name": "intruder", "src": adapter})
    assert sagemaker.status_code != 401
    assert httpx.get(f"{url}/health").status_code == 200  # probes need no key

    policy = cluster.one("NetworkPolicy", "-serving")["spec"]
    serving = cluster.one("Deployment", "-serving")["spec"]["template"]["metadata"]["labels"]
    gateway = cluster.one("Deployment", "-gateway")["spec"]["template"]["metadata"]["labels"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"].items() <= serving.items()
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": SERVING_PORT}]
    peers = rule["from"]
    assert len(peers) == 2
    assert peers[0] == {"podSelector": {"matchLabels": peers[0]["podSelector"]["matchLabels"]}}
    assert peers[0]["podSelector"]["matchLabels"].items() <= gateway.items()
    assert peers[1]["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "multitask-system"}
    }


def test_the_rendered_vllm_pod_serves_a_fully_fine_tuned_model(workspace, venv, capsys, tmp_path):
    doc = lora_resource()
    doc["metadata"] = {"name": "tiny-full"}
    doc["spec"]["training"]["method"] = "full"
    doc["spec"]["filtering"] = {"strategy": "none"}
    cluster = render(workspace, doc, capsys)
    server = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]["containers"][0]
    model_path = server["args"][0]  # the model is vLLM's first positional argument
    assert model_path.endswith("/model") and "--enable-lora" not in server["args"]
    write_full_model(workspace / "models" / "tiny", cluster.host(model_path))

    with start_serving(cluster, venv) as pod:
        client = gateway_for(cluster, pod, tmp_path / "catalogue.json")
        for name in ("sentiment", "sounds"):
            answer = client.post(f"/tasks/{name}", json={"text": "the dog says"})
            assert answer.status_code == 200, answer.text
        assert client.post("/tasks/nope", json={"text": "x"}).status_code == 404
