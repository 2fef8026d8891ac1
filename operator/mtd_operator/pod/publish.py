"""Publishing a Job pod's result to the operator, as a ConfigMap it owns.

A Job's pod cannot reach the operator, and the operator does not mount the workspace
volume, so each step's small machine-readable result (a data profile, a trainer's
result.json, evaluation scores) is written by the pod into a ConfigMap owned by the
MultiTaskDeployment. ConfigMaps hold up to 1 MiB, far more than a termination message;
a larger result is gzipped and split over several (`mtd_operator.result_parts`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..labels import (
    DEPLOYMENT_ENV,
    LABEL_DEPLOYMENT,
    NAMESPACE_ENV,
    OWNER_ENV,
    RESULT_COMPONENT,
)
from ..result_parts import encode


def _api():
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    api = client.ApiClient()
    api.user_agent = "multitask-trainer/0.1.0"
    return client.CoreV1Api(api)


def write_result(name: str, payload: dict[str, Any]) -> None:
    """Create or replace ConfigMap `name` (and, for a large result, its parts) in this
    pod's namespace with the payload. Raises `ResultTooLarge` before writing anything
    when no number of ConfigMaps the operator reads would hold it."""
    from kubernetes.client.exceptions import ApiException

    namespace = os.environ.get(NAMESPACE_ENV, "default")
    labels = dict(RESULT_COMPONENT)
    if os.environ.get(DEPLOYMENT_ENV):
        labels[LABEL_DEPLOYMENT] = os.environ[DEPLOYMENT_ENV]
    owner = json.loads(os.environ[OWNER_ENV]) if os.environ.get(OWNER_ENV) else None
    parts = encode(name, payload)
    api = _api()
    for part in parts:  # the head last: once the operator sees it, every part is there
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": part.name,
                "labels": labels,
                **({"ownerReferences": [owner]} if owner else {}),
            },
            "data": part.data,
        }
        if part.binary_data:
            body["binaryData"] = part.binary_data
        try:
            api.create_namespaced_config_map(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            api.replace_namespaced_config_map(part.name, namespace, body)
