"""In-memory stand-ins for the typed Kubernetes clients the Controller calls (`Clients`):
enough of the API server's behaviour to test each decision a pass applies, without a
server. Objects are kept as the JSON the server would store and handed back as the
client's own models (`ApiClient.deserialize`), so the Controller reads the same
attribute names (`job.status.conditions`, `pod.metadata.labels`) it reads on a cluster.

What it enforces, as the API server does: a create of an existing name is a 409, a read
or delete of a missing one a 404, a status patch with a stale resourceVersion a 409
(the optimistic concurrency of every write, "API Concepts: Resource versions" in the
Kubernetes docs), and label selectors of the `k=v,k2=v2` form the Controller sends.
The e2e tests run the Controller against the emulator and real kubectl; these run it
against nothing but its decisions.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections import defaultdict
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

_DESERIALIZER = client.ApiClient()
_VERSIONS = itertools.count(1)


def model(payload: Any, kind: str) -> Any:
    """The client's model (`V1Job`, `V1PodList`...) of a JSON object."""
    return _DESERIALIZER.deserialize(json.dumps(payload), kind, "application/json")


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): null deletes, objects merge, the rest replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


class Store:
    """Objects by (kind, namespace, name), and every write made, in order."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []  # (verb, kind, name)

    def put(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        stored = copy.deepcopy(body)
        meta = stored.setdefault("metadata", {})
        meta.setdefault("namespace", namespace)
        meta["resourceVersion"] = str(next(_VERSIONS))
        meta.setdefault("generation", 1)
        if kind in ("Job", "Deployment", "Pod"):  # the server returns `status: {}` at first
            stored.setdefault("status", {})
        self.objects[(kind, namespace, meta["name"])] = stored
        return stored

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body["metadata"].get("name") or body["metadata"]["generateName"] + str(
            next(_VERSIONS)
        )
        body = {**body, "metadata": {**body["metadata"], "name": name}}
        if (kind, namespace, name) in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        self.writes.append(("create", kind, name))
        return self.put(kind, namespace, body)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        try:
            return self.objects[(kind, namespace, name)]
        except KeyError:
            raise ApiException(status=404, reason="NotFound") from None

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self.get(kind, namespace, name)
        self.writes.append(("delete", kind, name))
        del self.objects[(kind, namespace, name)]

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> dict:
        current = self.get(kind, namespace, name)
        wanted = (patch.get("metadata") or {}).get("resourceVersion")
        if wanted is not None and wanted != current["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        self.writes.append(("patch", kind, name))
        merged = _merge(copy.deepcopy(current), patch)
        return self.put(kind, namespace, merged)

    def listed(self, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
        return [
            obj
            for (k, ns, _), obj in sorted(self.objects.items())
            if k == kind and ns == namespace
            and _matches(obj["metadata"].get("labels") or {}, selector)
        ]  # fmt: skip

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [obj for (k, _, _), obj in sorted(self.objects.items()) if k == kind]

    def created(self) -> list[str]:
        return [f"{kind}/{name}" for verb, kind, name in self.writes if verb == "create"]


def _list(kind: str, items: list[dict[str, Any]]) -> Any:
    return model({"items": items, "metadata": {}}, f"{kind}List")


class _Core:
    def __init__(self, store: Store):
        self.store = store
        self.api_client = None

    def list_namespaced_config_map(self, namespace, label_selector=None, **_):
        return _list("V1ConfigMap", self.store.listed("ConfigMap", namespace, label_selector))

    def create_namespaced_config_map(self, namespace, body, **_):
        return self.store.create("ConfigMap", namespace, body)

    def patch_namespaced_config_map(self, name, namespace, body, **_):
        return self.store.patch("ConfigMap", namespace, name, body)

    def create_namespaced_secret(self, namespace, body, **_):
        return self.store.create("Secret", namespace, body)

    def patch_namespaced_secret(self, name, namespace, body, **_):
        return self.store.patch("Secret", namespace, name, body)

    def create_namespaced_service(self, namespace, body, **_):
        return self.store.create("Service", namespace, body)

    def list_namespaced_pod(self, namespace, label_selector=None, **_):
        return _list("V1Pod", self.store.listed("Pod", namespace, label_selector))

    def list_namespaced_event(self, namespace, field_selector=None, **_):
        return _list("CoreV1Event", [])

    def create_namespaced_event(self, namespace, body, **_):
        return self.store.create("Event", namespace, body)


class _Batch:
    def __init__(self, store: Store):
        self.store = store

    def list_namespaced_job(self, namespace, label_selector=None, **_):
        return _list("V1Job", self.store.listed("Job", namespace, label_selector))

    def create_namespaced_job(self, namespace, body, **_):
        return self.store.create("Job", namespace, body)

    def delete_namespaced_job(self, name, namespace, propagation_policy=None, **_):
        self.store.delete("Job", namespace, name)


class _Apps:
    def __init__(self, store: Store):
        self.store = store

    def read_namespaced_deployment(self, name, namespace, **_):
        return model(self.store.get("Deployment", namespace, name), "V1Deployment")

    def create_namespaced_deployment(self, namespace, body, **_):
        return self.store.create("Deployment", namespace, body)

    def replace_namespaced_deployment(self, name, namespace, body, **_):
        self.store.writes.append(("replace", "Deployment", name))
        return self.store.put("Deployment", namespace, body)


class _Networking:
    def __init__(self, store: Store):
        self.store = store

    def create_namespaced_network_policy(self, namespace, body, **_):
        return self.store.create("NetworkPolicy", namespace, body)


class _Custom:
    def __init__(self, store: Store):
        self.store = store

    def get_namespaced_custom_object(self, group, version, namespace, plural, name, **_):
        return copy.deepcopy(self.store.get(plural, namespace, name))

    def patch_namespaced_custom_object_status(
        self, group, version, namespace, plural, name, body, **_
    ):
        return self.store.patch(plural, namespace, name, body)


class FakeClients:
    """Duck-types `mtd_operator.kube.controller.Clients` over one `Store`."""

    def __init__(self, store: Store | None = None):
        self.store = store or Store()
        self.core = _Core(self.store)
        self.batch = _Batch(self.store)
        self.apps = _Apps(self.store)
        self.networking = _Networking(self.store)
        self.custom = _Custom(self.store)


def job_finished(store: Store, namespace: str, name: str, kind: str, **condition: str) -> None:
    """What the Job controller writes when a Job ends: its `Complete` or `Failed` condition."""
    status = {"conditions": [{"type": kind, "status": "True", **condition}]}
    status["succeeded" if kind == "Complete" else "failed"] = 1
    store.get("Job", namespace, name)["status"] = status


def failed_pod(store: Store, namespace: str, job: str, message: str, exit_code: int = 2) -> None:
    """The Job's pod as the kubelet leaves it after its container exited `exit_code`."""
    store.put(
        "Pod",
        namespace,
        {
            "metadata": {
                "name": f"{job}-abcde",
                "labels": {
                    **store.get("Job", namespace, job)["metadata"]["labels"],
                    "job-name": job,
                },
            },
            "spec": {"containers": [{"name": "trainer", "image": "trainer"}]},
            "status": {
                "phase": "Failed",
                "containerStatuses": [
                    {
                        "name": "trainer",
                        "image": "trainer",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {
                            "terminated": {
                                "exitCode": exit_code,
                                "reason": "Error",
                                "message": message,
                                "finishedAt": "2026-01-01T00:00:00Z",
                            }
                        },
                    }
                ],
            },
        },
    )


def by_role(objects: list[dict[str, Any]]) -> defaultdict[str, list[str]]:
    roles: defaultdict[str, list[str]] = defaultdict(list)
    for obj in objects:
        roles[(obj["metadata"].get("labels") or {}).get("multitask.dev/role", "")].append(
            obj["metadata"]["name"]
        )
    return roles
