"""Fault injection hooks and the deployment controller."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from k8s_emulator import DeploymentController, Emulator

CMS = "/api/v1/namespaces/default/configmaps"


@pytest.mark.parametrize("status", [409, 429, 500, 503])
def test_next_n_matching_requests_fail(emulator: Emulator, status: int) -> None:
    fault = emulator.inject_fault("POST", r"/configmaps$", status, count=2, retry_after=1)
    with httpx.Client(base_url=emulator.url) as http:
        assert http.get(CMS).status_code == 200  # other methods are untouched
        for _ in range(2):
            resp = http.post(CMS, json={"metadata": {"name": "c"}})
            assert resp.status_code == status
            assert resp.json()["kind"] == "Status" and resp.json()["code"] == status
            assert resp.headers["Retry-After"] == "1"
        assert http.post(CMS, json={"metadata": {"name": "c"}}).status_code == 201
    assert fault.exhausted and len(fault.hits) == 2


def test_watch_streams_can_be_cut_mid_stream(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        for name in ("a", "b", "c"):
            http.post(CMS, json={"metadata": {"name": name}})
        emulator.cut_watches(r"/configmaps", after_events=2)
        with http.stream("GET", CMS, params={"watch": "true", "timeoutSeconds": "5"}) as resp:
            lines = [json.loads(line) for line in resp.iter_lines() if line.strip()]
        assert [e["object"]["metadata"]["name"] for e in lines] == ["a", "b"]
        # The next watch is whole again.
        with http.stream("GET", CMS, params={"watch": "true", "timeoutSeconds": "1"}) as resp:
            lines = [json.loads(line) for line in resp.iter_lines() if line.strip()]
        assert len(lines) == 3


def test_kmock_reactions_can_override_any_path(emulator: Emulator) -> None:
    """The kmock DSL stays available: user reactions win over the emulation."""
    emulator.handler["get /api/v1/namespaces/default/configmaps/magic"] << {"magic": True}
    with httpx.Client(base_url=emulator.url) as http:
        assert http.get(f"{CMS}/magic").json() == {"magic": True}
        assert http.get(f"{CMS}/other").status_code == 404
    assert len(emulator.requests["get", "/api/v1/namespaces/default/configmaps/magic"]) == 1


def _deployment(name: str, image: str = "srv:1") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "m", "image": image}]},
            },
        },
    }


def _available(emulator: Emulator, name: str) -> dict[str, Any] | None:
    dep = emulator.try_get("apps/v1/deployments", name)
    if dep is None:
        return None
    status = dep.get("status") or {}
    conds = {c["type"]: c for c in status.get("conditions") or []}
    ok = (
        conds.get("Available", {}).get("status") == "True"
        and status.get("observedGeneration") == dep["metadata"]["generation"]
        and status.get("updatedReplicas") == dep["spec"]["replicas"]
    )
    return dep if ok else None


def test_deployment_becomes_available_and_held_revision_stays_unready(
    emulator: Emulator, deployment_controller: DeploymentController
) -> None:
    emulator.create(_deployment("srv"))
    dep = emulator.wait_for(lambda: _available(emulator, "srv"), timeout=10)
    assert dep["status"]["readyReplicas"] == 2 and dep["status"]["availableReplicas"] == 2
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"

    deployment_controller.hold_unready("srv", revision=2)
    emulator.patch(
        "apps/v1/deployments",
        "srv",
        {"spec": {"template": {"spec": {"containers": [{"name": "m", "image": "srv:2"}]}}}},
    )

    def stuck() -> dict[str, Any] | None:
        d = emulator.get("apps/v1/deployments", "srv")
        conds = {c["type"]: c for c in d["status"].get("conditions") or []}
        return (
            d if conds.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded" else None
        )

    dep = emulator.wait_for(stuck, timeout=10)
    assert dep["status"]["updatedReplicas"] == 0
    assert dep["status"]["availableReplicas"] == 2  # the old revision keeps serving
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"

    deployment_controller.release()
    emulator.wait_for(lambda: _available(emulator, "srv"), timeout=10)
