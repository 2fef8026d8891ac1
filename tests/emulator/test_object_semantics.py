"""Status subresource, generation, patch flavours, finalizers and garbage collection."""

from __future__ import annotations

from typing import Any

import httpx

from k8s_emulator import Emulator

MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}
JSONPATCH = {"Content-Type": "application/json-patch+json"}
W = "/apis/test.example.com/v1/namespaces/default/widgets"


def _widget(name: str, size: int = 1, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name, **meta},
        "spec": {"size": size},
    }


def test_status_subresource_and_generation(emulator: Emulator, widgets: str) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        created = http.post(W, json={**_widget("w"), "status": {"observedGeneration": 9}})
        assert created.status_code == 201
        assert "status" not in created.json()  # status is ignored on create
        assert created.json()["metadata"]["generation"] == 1

        # A status write changes only status, and not the generation.
        st = http.patch(
            f"{W}/w/status",
            headers=MERGE,
            json={"spec": {"size": 5}, "status": {"observedGeneration": 1}},
        )
        assert st.json()["spec"]["size"] == 1 and st.json()["status"] == {"observedGeneration": 1}
        assert st.json()["metadata"]["generation"] == 1

        # A main-resource write ignores status; a spec change bumps the generation.
        main = http.patch(
            f"{W}/w", headers=MERGE, json={"spec": {"size": 2}, "status": {"observedGeneration": 7}}
        )
        assert main.json()["status"] == {"observedGeneration": 1}
        assert main.json()["metadata"]["generation"] == 2

        # Metadata-only changes do not bump it; a no-op write does not bump the rv either.
        meta = http.patch(f"{W}/w", headers=MERGE, json={"metadata": {"labels": {"a": "b"}}})
        assert meta.json()["metadata"]["generation"] == 2
        again = http.patch(f"{W}/w", headers=MERGE, json={"metadata": {"labels": {"a": "b"}}})
        assert (
            again.json()["metadata"]["resourceVersion"]
            == meta.json()["metadata"]["resourceVersion"]
        )

        # PUT on /status with the whole object.
        obj = again.json()
        obj["status"] = {"observedGeneration": 2}
        obj["spec"]["size"] = 100
        put = http.put(f"{W}/w/status", json=obj)
        assert put.json()["status"] == {"observedGeneration": 2}
        assert put.json()["spec"]["size"] == 2


def test_status_patch_with_a_stale_resource_version_is_refused(
    emulator: Emulator, widgets: str
) -> None:
    """A status merge patch that carries metadata.resourceVersion is a precondition, as on
    a real API server: the operator's status writes rely on it (optimistic concurrency)."""
    with httpx.Client(base_url=emulator.url) as http:
        read = http.post(W, json=_widget("w")).json()["metadata"]["resourceVersion"]
        http.patch(f"{W}/w", headers=MERGE, json={"metadata": {"labels": {"a": "b"}}})
        stale = http.patch(
            f"{W}/w/status",
            headers=MERGE,
            json={"metadata": {"resourceVersion": read}, "status": {"observedGeneration": 1}},
        )
        assert stale.status_code == 409
        assert stale.json()["reason"] == "Conflict"
        assert "status" not in http.get(f"{W}/w").json()

        current = http.get(f"{W}/w").json()["metadata"]["resourceVersion"]
        fresh = http.patch(
            f"{W}/w/status",
            headers=MERGE,
            json={"metadata": {"resourceVersion": current}, "status": {"observedGeneration": 1}},
        )
        assert fresh.status_code == 200
        assert fresh.json()["status"] == {"observedGeneration": 1}


def test_patch_flavours_and_json_patch_test(emulator: Emulator) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    with httpx.Client(base_url=emulator.url) as http:
        cm = http.post(path, json={"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}})
        rv = cm.json()["metadata"]["resourceVersion"]
        merged = http.patch(f"{path}/c", headers=MERGE, json={"data": {"a": None, "c": "3"}})
        assert merged.json()["data"] == {"b": "2", "c": "3"}
        strategic = http.patch(f"{path}/c", headers=STRATEGIC, json={"data": {"d": "4"}})
        assert strategic.json()["data"] == {"b": "2", "c": "3", "d": "4"}

        # kopf's finalizer patch: a `test` on the (now stale) resourceVersion → 422.
        stale = http.patch(
            f"{path}/c",
            headers=JSONPATCH,
            json=[
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
            ],
        )
        assert stale.status_code == 422
        fresh_rv = strategic.json()["metadata"]["resourceVersion"]
        ok = http.patch(
            f"{path}/c",
            headers=JSONPATCH,
            json=[
                {"op": "test", "path": "/metadata/resourceVersion", "value": fresh_rv},
                {"op": "add", "path": "/metadata/finalizers", "value": ["x"]},
            ],
        )
        assert ok.status_code == 200 and ok.json()["metadata"]["finalizers"] == ["x"]

        optimistic = http.patch(
            f"{path}/c",
            headers=MERGE,
            json={"metadata": {"resourceVersion": rv}, "data": {"z": "1"}},
        )
        assert optimistic.status_code == 409
        unsupported = http.patch(f"{path}/c", headers={"Content-Type": "text/plain"}, content=b"x")
        assert unsupported.status_code == 415


def test_finalizers_defer_deletion(emulator: Emulator) -> None:
    path = "/api/v1/namespaces/default/configmaps"
    with httpx.Client(base_url=emulator.url) as http:
        http.post(path, json={"metadata": {"name": "f", "finalizers": ["a", "b"]}})
        deleting = http.delete(f"{path}/f")
        assert deleting.status_code == 200
        assert deleting.json()["metadata"]["deletionTimestamp"]
        assert http.get(f"{path}/f").status_code == 200
        assert http.delete(f"{path}/f").status_code == 200  # idempotent while pending
        refused = http.patch(
            f"{path}/f", headers=MERGE, json={"metadata": {"finalizers": ["a", "b", "c"]}}
        )
        assert refused.status_code == 422
        http.patch(f"{path}/f", headers=MERGE, json={"metadata": {"finalizers": ["b"]}})
        assert http.get(f"{path}/f").status_code == 200
        http.patch(f"{path}/f", headers=MERGE, json={"metadata": {"finalizers": None}})
        assert http.get(f"{path}/f").status_code == 404
    history = emulator.objects["v1/configmaps", "default", "f"].history
    assert history[-1] is None  # kmock's soft-deletion marker


def _owned(name: str, owner: dict[str, Any], kind: str = "ConfigMap") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "ownerReferences": [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
    }


def test_garbage_collection_cascades(emulator: Emulator, widgets: str) -> None:
    cms = "/api/v1/namespaces/default/configmaps"
    with httpx.Client(base_url=emulator.url) as http:
        owner = http.post(W, json=_widget("owner")).json()
        child = http.post(cms, json=_owned("child", owner)).json()
        http.post(cms, json=_owned("grandchild", child))
        other = http.post(cms, json={"metadata": {"name": "unrelated"}}).json()
        both = _owned("two-owners", owner)
        both["metadata"]["ownerReferences"].append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "name": "unrelated",
                "uid": other["metadata"]["uid"],
            }
        )
        http.post(cms, json=both)

        assert http.delete(f"{W}/owner").status_code == 200
        names = {i["metadata"]["name"] for i in http.get(cms).json()["items"]}
        assert names == {"unrelated", "two-owners"}
        survivor = http.get(f"{cms}/two-owners").json()
        assert [r["name"] for r in survivor["metadata"]["ownerReferences"]] == ["unrelated"]

        orphaned_owner = http.post(W, json=_widget("o2")).json()
        http.post(cms, json=_owned("orphan", orphaned_owner))
        http.request("DELETE", f"{W}/o2", json={"propagationPolicy": "Orphan"})
        orphan = http.get(f"{cms}/orphan").json()
        assert orphan["metadata"].get("ownerReferences") == []


def test_namespace_deletion_removes_contents(emulator: Emulator) -> None:
    emulator.ensure_namespace("tmp")
    with httpx.Client(base_url=emulator.url) as http:
        http.post("/api/v1/namespaces/tmp/configmaps", json={"metadata": {"name": "x"}})
        assert http.delete("/api/v1/namespaces/tmp").status_code == 200
        assert http.get("/api/v1/namespaces/tmp").status_code == 404
        assert http.get("/api/v1/namespaces/tmp/configmaps/x").status_code == 404
