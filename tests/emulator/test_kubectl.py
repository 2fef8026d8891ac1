"""kubectl against the emulator: apply, get (printer columns, -o json/yaml), wait, delete."""

from __future__ import annotations

import json
import threading
import time

import yaml

from k8s_emulator import Emulator
from tests.emulator.conftest import WIDGETS_CRD, KubectlFn

WIDGET = """
apiVersion: test.example.com/v1
kind: Widget
metadata:
  name: w1
spec:
  size: 3
"""

CONFIGMAP_AND_DEPLOYMENT = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  labels: {app: demo}
data:
  key: value
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: server
spec:
  replicas: 2
  selector: {matchLabels: {app: demo}}
  template:
    metadata: {labels: {app: demo}}
    spec:
      containers: [{name: main, image: example/server:1}]
"""


def test_apply_get_columns_wait_delete(emulator: Emulator, kubectl: KubectlFn) -> None:
    out = kubectl("apply", "-f", str(WIDGETS_CRD)).stdout
    assert "customresourcedefinition.apiextensions.k8s.io/widgets.test.example.com created" in out
    assert "widget.test.example.com/w1 created" in kubectl("apply", "-f", "-", input=WIDGET).stdout
    assert (
        "configured"
        in kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 4")).stdout
    )
    assert (
        "unchanged"
        in kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 4")).stdout
    )

    table = kubectl("get", "widgets").stdout.splitlines()
    assert table[0].split() == ["NAME", "SIZE", "COLOR", "READY", "AGE"]
    assert table[1].split()[:3] == ["w1", "4", "red"]  # color came from the schema default

    as_json = json.loads(kubectl("get", "wg", "w1", "-o", "json").stdout)
    assert as_json["spec"] == {"size": 4, "color": "red"}
    assert as_json["metadata"]["generation"] == 2
    as_yaml = yaml.safe_load(kubectl("get", "widget/w1", "-o", "yaml").stdout)
    assert as_yaml["metadata"]["uid"] == as_json["metadata"]["uid"]

    # Server-side validation: kubectl asks for fieldValidation=Strict.
    bad = kubectl(
        "apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 3\n  nope: 1"), check=False
    )
    assert bad.returncode != 0 and 'unknown field "spec.nope"' in bad.stderr
    invalid = kubectl("apply", "-f", "-", input=WIDGET.replace("size: 3", "size: 0"), check=False)
    assert invalid.returncode != 0 and "spec.size" in invalid.stderr

    def become_ready() -> None:
        time.sleep(0.5)
        emulator.patch(
            "test.example.com/v1/widgets",
            "w1",
            {
                "status": {
                    "conditions": [
                        {"type": "Ready", "status": "True", "reason": "Done", "message": "ok"}
                    ]
                }
            },
            subresource="status",
        )

    threading.Thread(target=become_ready, daemon=True).start()
    waited = kubectl("wait", "--for=condition=Ready", "widget/w1", "--timeout=20s")
    assert "condition met" in waited.stdout
    assert kubectl("get", "widgets").stdout.splitlines()[1].split()[3] == "True"

    emulator.patch("test.example.com/v1/widgets", "w1", {"metadata": {"finalizers": ["x"]}})

    def release() -> None:
        time.sleep(0.5)
        emulator.patch("test.example.com/v1/widgets", "w1", {"metadata": {"finalizers": None}})

    threading.Thread(target=release, daemon=True).start()
    deleted = kubectl("delete", "widget", "w1", "--timeout=20s")  # waits for the finalizer
    assert 'widget.test.example.com "w1" deleted' in deleted.stdout
    assert emulator.try_get("test.example.com/v1/widgets", "w1") is None
    assert "No resources found" in kubectl("get", "widgets").stderr


def test_builtin_kinds_through_kubectl(emulator: Emulator, kubectl: KubectlFn) -> None:
    emulator.ensure_namespace("team")
    out = kubectl("apply", "-n", "team", "-f", "-", input=CONFIGMAP_AND_DEPLOYMENT).stdout
    assert "configmap/settings created" in out and "deployment.apps/server created" in out
    assert emulator.get("apps/v1/deployments", "server", "team")["spec"]["replicas"] == 2

    rows = kubectl("get", "deploy", "-A").stdout.splitlines()
    assert rows[0].split()[:2] == ["NAMESPACE", "NAME"] and rows[1].split()[:2] == [
        "team",
        "server",
    ]
    assert (
        kubectl("get", "cm", "-n", "team", "-l", "app=demo", "-o", "name").stdout.strip()
        == "configmap/settings"
    )
    assert (
        "server"
        in kubectl(
            "get", "deployments.apps", "-n", "team", "-o", "jsonpath={.items[*].metadata.name}"
        ).stdout
    )
    kubectl("delete", "-n", "team", "-f", "-", input=CONFIGMAP_AND_DEPLOYMENT)
    assert emulator.list("v1/configmaps", "team") == []
    ns_table = kubectl("get", "ns").stdout
    assert "team" in ns_table and "Active" in ns_table
