"""Switching engine or method on a live resource gives exactly the newly rendered serving
pod template: the controller replaces the Deployment whole when its rendered spec changes.

A strategic merge patch, what the Kubernetes client sends for a dict body, merges
containers, env and volumes by name (shown here with the real kubectl's offline
`patch --local --type strategic`): a vLLM → TGI switch would keep vLLM's command, env and
adapters volume, and TGI would run `vllm serve`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest
from kubernetes import config

from k8s_emulator import Emulator
from mtd_operator.kube import builders
from mtd_operator.kube.controller import Clients, Controller
from tests.kube.test_builders import CONFIG, finished_decision, make_spec

NS = "ml"
BODY = {"metadata": {"name": "support", "namespace": NS, "uid": "uid-1"}}


def rendered(**overrides: Any) -> dict[str, Any]:
    spec = make_spec(**overrides)
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, CONFIG, NS, "support")
    return builders.serving_deployment(
        builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
    )


TGI = {"serving": {"engine": "tgi"}}
VLLM = {"serving": {"engine": "vllm"}}
FULL = {
    "serving": {"engine": "vllm"},
    "training": {"method": "full"},
    "filtering": {"strategy": "none"},
}


def server(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


@pytest.fixture
def controller() -> Any:
    with Emulator() as emulator:
        api = config.new_client_from_config(config_file=emulator.kubeconfig_path)
        clients = Clients.of(api)
        clients.core.create_namespace({"metadata": {"name": NS}})
        yield Controller(CONFIG, clients), emulator


@pytest.mark.parametrize(
    ("before", "after"),
    [(VLLM, TGI), (TGI, VLLM), (VLLM, FULL), (FULL, VLLM)],
    ids=["vllm-to-tgi", "tgi-to-vllm", "lora-to-full", "full-to-lora"],
)
def test_a_live_switch_serves_exactly_the_new_template(controller, before, after):
    ctl, emulator = controller
    assert ctl.ensure.apply(rendered(**before)) == "created"
    desired = rendered(**after)
    assert ctl.ensure.apply(desired) == "updated"
    live = emulator.get("apps/v1/deployments", "support-serving", NS)
    assert live["spec"]["template"] == desired["spec"]["template"]
    assert live["metadata"]["annotations"] == desired["metadata"]["annotations"]
    version = live["metadata"]["resourceVersion"]
    assert ctl.ensure.apply(desired) == "unchanged"  # level-based: nothing left to change
    assert (
        emulator.get("apps/v1/deployments", "support-serving", NS)["metadata"]["resourceVersion"]
        == version
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_a_strategic_merge_patch_would_keep_the_old_engines_command(tmp_path):
    old, new = rendered(**VLLM), rendered(**TGI)
    (tmp_path / "old.json").write_text(json.dumps(old))
    merged = subprocess.run(
        ["kubectl", "patch", "--local", "--type", "strategic", "-o", "json",
         "-f", str(tmp_path / "old.json"), "-p", json.dumps({"spec": new["spec"]})],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    container = server(json.loads(merged.stdout))
    assert container["command"] == server(old)["command"]  # `vllm serve` under TGI's image
    assert "command" not in server(new)
