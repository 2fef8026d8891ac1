"""TGI cannot run here (no GPU, no container engine), but its pod's identity can: the
rendered TGI Deployment runs as its image's user, root, with every capability dropped, so
it has no CAP_DAC_OVERRIDE and can open another uid's file only through the file's mode.
The trainer pods write the workspace as uid 65532. Here the rendered pod (its env, its
volumes, its securityContext) opens every file TGI loads: the base model and each adapter
that LORA_ADAPTERS names, as TGI's loader does (config JSON, then safetensors)."""

from __future__ import annotations

import os

import pytest

from tests.engine.conftest import CLAIM, Cluster, lora_resource, render, write_adapter
from tests.support.kubelet import run_container

pytestmark = pytest.mark.slow

# What TGI's server reads at start-up, done with the same libraries: the model's config
# and weights, and per adapter adapter_config.json and adapter_model.safetensors
# (server/text_generation_server/utils/adapter.py, load_and_merge_adapters).
READ_LIKE_TGI = r"""
import json, os, sys
from pathlib import Path
from safetensors import safe_open
model = Path(sys.argv[1])
json.loads((model / "config.json").read_text())
folders = [model] + [Path(p.split("=", 1)[1]) for p in os.environ["LORA_ADAPTERS"].split(",")]
for folder in folders:
    for weights in sorted(folder.glob("*.safetensors")):
        open(weights, "rb").close()  # safetensors words a refused open as "not found"
        with safe_open(str(weights), "pt") as handle:
            handle.keys()
    for config in sorted(folder.glob("*.json")):
        json.loads(config.read_text())
print("read", len(folders), "folders as uid", os.getuid())
"""


def tgi_cluster(workspace, capsys) -> Cluster:
    doc = lora_resource()
    doc["metadata"] = {"name": "tiny-tgi"}
    doc["spec"]["serving"] = {"engine": "tgi", "maxModelLength": 512}
    doc["spec"]["training"]["lora"] = {"rank": 16, "alpha": 32}  # a TGI kernel rank
    return render(workspace, doc, capsys)


def read_as_tgi(cluster: Cluster, venv) -> tuple[int, str]:
    template = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]
    server = template["containers"][0]
    assert "runAsUser" not in template["securityContext"]  # the image's user: root
    assert server["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    model = server["args"][server["args"].index("--model-id") + 1]
    # The image's entrypoint (text-generation-launcher) replaced by the reads it makes.
    reader = {**server, "command": ["python", "-c", READ_LIKE_TGI, model], "args": []}
    pod = run_container(
        {**template, "containers": [reader]},
        image_venv=venv,
        claims={CLAIM: cluster.workspace},
        config_maps=cluster.config_maps(),
    )
    with pod:
        code = pod.process.wait(timeout=120)
        return code, pod.logs()


def test_tgi_as_rendered_can_read_what_the_trainer_pods_wrote(workspace, venv, capsys):
    cluster = tgi_cluster(workspace, capsys)
    server = cluster.one("Deployment", "-serving")["spec"]["template"]["spec"]["containers"][0]
    adapters = dict(
        pair.split("=", 1)
        for env in server["env"]
        if env["name"] == "LORA_ADAPTERS"
        for pair in env["value"].split(",")
    )
    for seed, path in enumerate(adapters.values()):
        write_adapter(workspace / "models" / "tiny", cluster.host(path), seed)

    code, logs = read_as_tgi(cluster, venv)
    assert code == 0, logs
    assert "read 3 folders as uid 0" in logs

    # The same pod cannot open a file the trainer's uid kept to itself (0600, what
    # safetensors writes by default): the sandbox really drops CAP_DAC_OVERRIDE.
    weights = cluster.host(next(iter(adapters.values()))) / "adapter_model.safetensors"
    os.chmod(weights, 0o600)
    try:
        code, logs = read_as_tgi(cluster, venv)
    finally:
        os.chmod(weights, 0o644)
    assert code != 0 and "PermissionError" in logs, logs
