"""Status writes carry the resourceVersion the pass read; a lost race re-runs the pass.

Runs the real Controller in-process against the API emulator, whose PATCH enforces a
`metadata.resourceVersion` precondition as the API server does (409 Conflict)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from k8s_emulator import Emulator
from mtd_operator.api.spec import API_GROUP, API_VERSION, PLURAL
from mtd_operator.config import OperatorConfig
from mtd_operator.kube.controller import CONFLICT_RETRIES, Clients, Controller, StatusConflict
from tests.support.tiny_tasks import tiny_resource

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml"
NS = "default"

RESOURCE = tiny_resource(
    [
        {
            "name": "t1",
            "type": "classification",
            "labels": ["a", "b"],
            "instruction": "Pick a or b.",
            "data": {"train": "/workspace/t1/train.jsonl", "eval": "/workspace/t1/eval.jsonl"},
        }
    ],
    base_uri="/workspace/models/tiny",
    metadata={"name": "race", "namespace": NS},
)


@pytest.fixture
def cluster() -> Iterator[tuple[Emulator, Clients]]:
    with Emulator() as emulator:
        subprocess.run(
            ["kubectl", "--kubeconfig", emulator.kubeconfig_path, "apply", "-f", str(CRD)],
            check=True,
            capture_output=True,
        )
        api = config.new_client_from_config(config_file=emulator.kubeconfig_path)
        clients = Clients.of(api)
        clients.custom.create_namespaced_custom_object(API_GROUP, API_VERSION, NS, PLURAL, RESOURCE)
        yield emulator, clients


class RacingReads:
    """Wraps the custom-objects API: after each of the first `races` reads, another writer
    changes the resource, so the status write that follows is stale."""

    def __init__(self, custom: client.CustomObjectsApi, races: int):
        self.custom = custom
        self.races = races
        self.status_writes = 0

    def get_namespaced_custom_object(self, *args: Any, **kwargs: Any) -> Any:
        body = self.custom.get_namespaced_custom_object(*args, **kwargs)
        if self.races > 0:
            self.races -= 1
            self.custom.patch_namespaced_custom_object(
                API_GROUP,
                API_VERSION,
                NS,
                PLURAL,
                "race",
                {"metadata": {"annotations": {"someone-else": str(self.races)}}},
            )
        return body

    def patch_namespaced_custom_object_status(self, *args: Any, **kwargs: Any) -> Any:
        self.status_writes += 1
        return self.custom.patch_namespaced_custom_object_status(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.custom, name)


def _controller(clients: Clients, races: int) -> tuple[Controller, RacingReads]:
    racing = RacingReads(clients.custom, races)
    wrapped = Clients(clients.core, clients.batch, clients.apps, racing)  # type: ignore[arg-type]
    return Controller(OperatorConfig(), wrapped), racing


def test_a_stale_status_write_is_refused_and_the_pass_runs_again(cluster):
    _, clients = cluster
    controller, racing = _controller(clients, races=1)
    result = controller.reconcile(NS, "race")
    assert result is not None
    assert racing.status_writes == 2  # the stale write (409), then the fresh pass's write
    stored = clients.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, NS, PLURAL, "race")
    assert stored["status"]["conditions"], stored.get("status")
    assert stored["metadata"]["annotations"]["someone-else"] == "0"  # the other write survived


def test_a_status_write_that_keeps_losing_surfaces_after_the_retries(cluster):
    _, clients = cluster
    controller, racing = _controller(clients, races=CONFLICT_RETRIES + 1)
    with pytest.raises(StatusConflict):
        controller.reconcile(NS, "race")
    assert racing.status_writes == CONFLICT_RETRIES + 1
    stored = clients.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, NS, PLURAL, "race")
    assert "status" not in stored or not stored["status"]


def test_without_a_race_one_pass_writes_once(cluster):
    _, clients = cluster
    controller, racing = _controller(clients, races=0)
    assert controller.reconcile(NS, "race") is not None
    assert racing.status_writes == 1
