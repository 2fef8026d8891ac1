"""CRUD, server-managed metadata, typed lists, selectors and discovery."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from k8s_emulator import Emulator


def _cm(name: str, labels: dict[str, str] | None = None, ns: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": {"k": name},
    }


def test_create_get_conflict_and_not_found(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        created = http.post("/api/v1/namespaces/default/configmaps", json=_cm("a"))
        assert created.status_code == 201
        meta = created.json()["metadata"]
        assert meta["uid"] and meta["creationTimestamp"] and meta["resourceVersion"]
        assert "generation" not in meta  # ConfigMaps have no spec, hence no generation

        dup = http.post("/api/v1/namespaces/default/configmaps", json=_cm("a"))
        assert dup.status_code == 409
        assert dup.json() | {"details": None} == {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'configmaps "a" already exists',
            "reason": "AlreadyExists",
            "code": 409,
            "details": None,
        }

        missing = http.get("/api/v1/namespaces/default/configmaps/nope")
        assert missing.status_code == 404
        assert missing.json()["reason"] == "NotFound"
        assert missing.headers["content-type"].startswith("application/json")

        no_ns = http.post("/api/v1/namespaces/ghost/configmaps", json=_cm("a", ns="ghost"))
        assert no_ns.status_code == 404
        assert no_ns.json()["message"] == 'namespaces "ghost" not found'


def test_resource_versions_are_monotonic_and_generate_name_works(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        versions = []
        for _ in range(3):
            body = {"metadata": {"generateName": "gen-"}, "data": {}}
            resp = http.post("/api/v1/namespaces/default/configmaps", json=body)
            assert resp.status_code == 201
            name = resp.json()["metadata"]["name"]
            assert name.startswith("gen-") and len(name) == len("gen-") + 5
            versions.append(int(resp.json()["metadata"]["resourceVersion"]))
        assert versions == sorted(versions) and len(set(versions)) == 3

        bad = http.post(
            "/api/v1/namespaces/default/configmaps", json={"metadata": {"name": "Not_Valid"}}
        )
        assert bad.status_code == 422
        assert bad.json()["details"]["causes"][0]["field"] == "metadata.name"


def test_typed_lists_selectors_and_all_namespaces(emulator: Emulator, api_client: Any) -> None:
    emulator.ensure_namespace("other")
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_config_map("default", _cm("a", {"app": "x", "tier": "web"}))
    core.create_namespaced_config_map("default", _cm("b", {"app": "y"}))
    core.create_namespaced_config_map("other", _cm("c", {"app": "x"}, ns="other"))

    def names(**kwargs: Any) -> list[str]:
        return [i.metadata.name for i in core.list_config_map_for_all_namespaces(**kwargs).items]

    assert names() == ["a", "b", "c"]
    assert names(label_selector="app=x") == ["a", "c"]
    assert names(label_selector="app!=x") == ["b"]
    assert names(label_selector="app in (x, y),tier") == ["a"]
    assert names(label_selector="app notin (x)") == ["b"]
    assert names(label_selector="!tier") == ["b", "c"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(field_selector="metadata.namespace=other") == ["c"]
    assert [i.metadata.name for i in core.list_namespaced_config_map("other").items] == ["c"]

    with httpx.Client(base_url=emulator.url) as http:
        raw = http.get("/api/v1/configmaps", params={"limit": "2"}).json()
        assert raw["kind"] == "ConfigMapList" and raw["apiVersion"] == "v1"
        assert len(raw["items"]) == 2 and raw["metadata"]["continue"]
        rest = http.get(
            "/api/v1/configmaps", params={"limit": "2", "continue": raw["metadata"]["continue"]}
        ).json()
        assert [i["metadata"]["name"] for i in rest["items"]] == ["c"]
        namespaces = http.get("/api/v1/namespaces").json()
        assert namespaces["kind"] == "NamespaceList"
        assert {"default", "other"} <= {n["metadata"]["name"] for n in namespaces["items"]}
        assert http.get("/api/v1/namespaces/other").json()["status"]["phase"] == "Active"


def test_discovery_documents(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        assert http.get("/api").json()["versions"] == ["v1"]
        groups = {g["name"] for g in http.get("/apis").json()["groups"]}
        assert {"apps", "batch", "coordination.k8s.io", "apiextensions.k8s.io"} <= groups
        core = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
        assert {
            "pods",
            "pods/status",
            "pods/log",
            "namespaces",
            "configmaps",
            "events",
            "secrets",
            "serviceaccounts",
            "services",
        } <= set(core)
        assert core["namespaces"]["namespaced"] is False
        assert "watch" in core["pods"]["verbs"]
        apps = http.get("/apis/apps/v1").json()
        assert apps["groupVersion"] == "apps/v1"
        assert {"deployments", "deployments/status"} <= {r["name"] for r in apps["resources"]}
        assert http.get("/apis/batch").json()["preferredVersion"]["version"] == "v1"
        assert http.get("/version").json()["major"] == "1"


def test_put_requires_current_resource_version(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        obj = http.post("/api/v1/namespaces/default/configmaps", json=_cm("a")).json()
        obj["data"] = {"k": "new"}
        ok = http.put("/api/v1/namespaces/default/configmaps/a", json=obj)
        assert ok.status_code == 200 and ok.json()["data"] == {"k": "new"}
        stale = http.put("/api/v1/namespaces/default/configmaps/a", json=obj)  # old rv
        assert stale.status_code == 409 and stale.json()["reason"] == "Conflict"


def test_official_client_crud_and_errors(emulator: Emulator, api_client: Any) -> None:
    apps = k8s.AppsV1Api(api_client)
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    dep = apps.create_namespaced_deployment("default", body)
    assert dep.spec.replicas == 1  # server-side default
    with pytest.raises(ApiException) as err:
        apps.create_namespaced_deployment("default", body)
    assert err.value.status == 409
    apps.delete_namespaced_deployment("d", "default")
    with pytest.raises(ApiException) as err:
        apps.read_namespaced_deployment("d", "default")
    assert err.value.status == 404


def test_emulators_with_overlapping_lifetimes() -> None:
    """Two servers, stopped in the order they started (not LIFO), both work and stop."""
    first = Emulator().start()
    second = Emulator().start()
    try:
        assert first.url != second.url
        assert httpx.get(f"{first.url}/api/v1/namespaces").status_code == 200
        first.stop()
        assert httpx.get(f"{second.url}/api/v1/namespaces").status_code == 200
    finally:
        first.stop()
        second.stop()
