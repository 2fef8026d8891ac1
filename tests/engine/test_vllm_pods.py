"""The vLLM serving Deployment `mtd manifests` renders, run as a kubelet would (its
command, args and env; its ConfigMap files at their mount paths; uid 65532 with no passwd
entry; a workspace the trainer pods' uid wrote) on the real vLLM at the chart's release.
It must become ready and serve every adapter, and, through the task gateway, answer each
task, take a new adapter at run time, refuse an unknown task, and serve `method: full`."""

from __future__ import annotations

import json
import pwd
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from mtd_operator.engines.base import SERVING_PORT
from mtd_operator.engines.vllm import ADAPTERS_KEY
from mtd_operator.gateway.app import build_gateway
from mtd_operator.kube import runtime_lora
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
    command = cluster.one("Deployment", "-gateway")["spec"]["template"]["spec"]["containers"][0]
    flags = dict(zip(command["command"][2::2], command["command"][3::2], strict=False))
    catalogue.write_text(cluster.one("ConfigMap", "-catalogue")["data"]["catalogue.json"])
    gateway = build_gateway(
        str(catalogue), pod.url(SERVING_PORT), flags["--engine"], flags.get("--base-model")
    )
    return TestClient(gateway.app)


def served_models(pod: Pod) -> dict[str, Any]:
    answer = httpx.get(pod.url(SERVING_PORT) + "/v1/models", timeout=30)
    assert answer.status_code == 200, answer.text
    return {entry["id"]: entry for entry in answer.json()["data"]}


def test_the_rendered_vllm_pod_serves_every_adapter_through_the_gateway(
    workspace, venv, capsys, tmp_path
):
    cluster = render(workspace, lora_resource(), capsys)
    modules = lora_modules(cluster)
    assert len(modules) == 2
    for seed, path in enumerate(modules.values()):
        write_adapter(workspace / "models" / "tiny", cluster.host(path), seed)
    container = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]
    assert container["securityContext"]["runAsUser"] == TRAINER_UID
    with pytest.raises(KeyError):  # the pod's uid has no passwd entry, as in the image
        pwd.getpwuid(container["securityContext"]["runAsUser"])

    with start_serving(cluster, venv) as pod:
        models = served_models(pod)
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
        assert runtime_lora.load_into(pod.url(SERVING_PORT), {"sentiment-new": pod_path}) == [
            "sentiment-new"
        ]
        assert "sentiment-new" in served_models(pod)
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
