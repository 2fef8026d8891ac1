"""A tiny kopf operator, end to end against the emulator.

It proves what the real operator will rely on: kopf's discovery and watches, its
finalizer JSON patches (``test`` on resourceVersion), status patching through the
subresource, ``kopf.adopt`` owner references and GC, and recovery from injected API
errors and cut watch streams.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import kopf
import pytest

from k8s_emulator import Emulator

WIDGETS = "test.example.com/v1/widgets"


def _build_registry(emulator: Emulator) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=emulator.url, default_namespace="default")

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.watching.server_timeout = 10
        settings.networking.error_backoffs = [0.1, 0.2, 0.3]
        settings.queueing.idle_timeout = 0.1
        settings.persistence.finalizer = "test.example.com/finalizer"

    @kopf.on.create("test.example.com", "v1", "widgets", registry=registry)
    @kopf.on.update("test.example.com", "v1", "widgets", field="spec", registry=registry)
    def reconcile(
        spec: kopf.Spec,
        name: str,
        namespace: str | None,
        body: kopf.Body,
        patch: kopf.Patch,
        meta: kopf.Meta,
        **_: Any,
    ) -> None:
        child = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{name}-child"},
            "data": {"size": str(spec["size"])},
        }
        kopf.adopt(child, owner=body)
        existing = emulator.try_get("v1/configmaps", f"{name}-child", namespace)
        if existing is None:
            emulator.create(child, namespace)
        else:
            emulator.patch("v1/configmaps", f"{name}-child", {"data": child["data"]}, namespace)
        patch.status["observedGeneration"] = meta["generation"]
        patch.status["conditions"] = [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "child in place"}
        ]

    @kopf.on.delete("test.example.com", "v1", "widgets", registry=registry)
    def cleanup(name: str, **_: Any) -> None:
        emulator.handler.pod_logs[("deleted", name)] = "yes"  # a visible side effect

    return registry


@pytest.fixture(params=["namespaced", "clusterwide"])
def operator(request: pytest.FixtureRequest, emulator: Emulator, widgets: str) -> Iterator[str]:
    """Run the operator in a thread with its own event loop; stop it cleanly.

    Namespaced, kopf lists and watches ``/namespaces/default/widgets``; cluster-wide, it
    uses the all-namespaces path ``/apis/test.example.com/v1/widgets``.
    """
    registry = _build_registry(emulator)
    stop = threading.Event()
    ready = threading.Event()
    emulator.ensure_namespace("other")
    clusterwide = request.param == "clusterwide"

    def run() -> None:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=True,
                clusterwide=clusterwide,
                namespaces=[] if clusterwide else ["default"],
                stop_flag=stop,
                ready_flag=ready,
            )
        )

    thread = threading.Thread(target=run, name="kopf", daemon=True)
    thread.start()
    assert ready.wait(20), "kopf did not start"
    yield str(request.param)
    stop.set()
    thread.join(20)
    assert not thread.is_alive()


def _widget(name: str, size: int) -> dict[str, Any]:
    return {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": {"size": size},
    }


def _ready(
    emulator: Emulator, name: str, generation: int, namespace: str = "default"
) -> dict[str, Any] | None:
    obj = emulator.try_get(WIDGETS, name, namespace)
    status = (obj or {}).get("status") or {}
    return obj if status.get("observedGeneration") == generation else None


def test_kopf_operator_end_to_end(emulator: Emulator, operator: str) -> None:
    emulator.create(_widget("w1", 3))
    obj = emulator.wait_for(lambda: _ready(emulator, "w1", 1), timeout=20)
    assert obj["metadata"]["finalizers"] == ["test.example.com/finalizer"]
    assert obj["status"]["conditions"][0]["type"] == "Ready"
    child = emulator.get("v1/configmaps", "w1-child")
    assert child["data"] == {"size": "3"}
    assert child["metadata"]["ownerReferences"][0]["uid"] == obj["metadata"]["uid"]

    # An injected 500 on the status patch, the open watch cut mid-stream and the next one
    # cut at once: kopf retries, re-watches from its last resourceVersion and converges.
    fault = emulator.inject_fault("PATCH", r"/widgets/w1", 500, count=1)
    cut = emulator.cut_watches(r"/widgets", after_events=0, count=1)
    assert emulator.drop_watches(r"/widgets") == 1
    emulator.patch(WIDGETS, "w1", {"spec": {"size": 5}})
    emulator.wait_for(lambda: _ready(emulator, "w1", 2), timeout=20)
    assert emulator.get("v1/configmaps", "w1-child")["data"] == {"size": "5"}
    assert fault.exhausted and cut.exhausted

    # Deletion: kopf runs the delete handler, removes its finalizer, then GC takes the child.
    emulator.delete(WIDGETS, "w1")
    emulator.wait_for(lambda: emulator.try_get(WIDGETS, "w1") is None, timeout=20)
    assert emulator.handler.pod_logs[("deleted", "w1")] == "yes"
    assert emulator.try_get("v1/configmaps", "w1-child") is None

    # The finalizer was added and removed by JSON patches with a resourceVersion test.
    json_patches = [
        r
        for r in emulator.requests["patch"]
        if r.headers.get("Content-Type") == "application/json-patch+json"
    ]
    assert any(
        op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion"
        for r in json_patches
        for op in (r.data or [])
    )


def test_kopf_scope(emulator: Emulator, operator: str) -> None:
    """Cluster-wide operators see every namespace; namespaced ones only their own."""
    emulator.create(_widget("elsewhere", 1), "other")
    emulator.create(_widget("here", 1))
    emulator.wait_for(lambda: _ready(emulator, "here", 1), timeout=20)
    if operator == "clusterwide":
        emulator.wait_for(lambda: _ready(emulator, "elsewhere", 1, "other"), timeout=20)
    else:
        assert _ready(emulator, "elsewhere", 1, "other") is None
