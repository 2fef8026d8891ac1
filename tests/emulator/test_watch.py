"""Watch streams: content type, resume from a resourceVersion, 410, selectors, bookmarks."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kubernetes import client as k8s
from kubernetes import watch
from kubernetes.client.exceptions import ApiException

from k8s_emulator import Emulator


def _events(
    http: httpx.Client, path: str, params: dict[str, str], count: int
) -> tuple[list[dict[str, Any]], httpx.Headers]:
    """Read ``count`` events from a watch stream (bounded by timeoutSeconds)."""
    events: list[dict[str, Any]] = []
    with http.stream(
        "GET", path, params={"watch": "true", "timeoutSeconds": "3", **params}
    ) as resp:
        for line in resp.iter_lines():
            if line.strip():
                events.append(json.loads(line))
            if len(events) >= count:
                break
        return events, resp.headers


def _cm(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": {}}


def test_watch_resumes_after_resource_version(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        path = "/api/v1/namespaces/default/configmaps"
        http.post(path, json=_cm("a"))
        listed = http.get(path).json()
        rv = listed["metadata"]["resourceVersion"]
        http.post(path, json=_cm("b"))
        http.patch(
            f"{path}/a",
            json={"data": {"x": "1"}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        http.delete(f"{path}/b")
        events, headers = _events(http, path, {"resourceVersion": rv}, 3)
        assert headers["content-type"].startswith("application/json")
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
        ]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and versions[0] > int(rv)

        # Without a resourceVersion: the current state as synthetic ADDED events.
        events, _ = _events(http, path, {}, 1)
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "a")]


def test_too_old_resource_version_gets_410(emulator: Emulator, api_client: Any) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_config_map("default", _cm("a"))
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    emulator.expire_resource_versions()
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        events, _ = _events(
            http, "/api/v1/namespaces/default/configmaps", {"resourceVersion": rv}, 1
        )
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"

    # The official client turns that into ApiException(410)...
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2
        ):
            pass
    assert err.value.status == 410
    # ...and a fresh list gives a version that can be watched from again.
    fresh = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm("b"))
    stream = watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=fresh, timeout_seconds=2
    )
    first = next(iter(stream))
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "b")


def test_label_selector_watch_sees_enter_and_leave(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        path = "/api/v1/namespaces/default/configmaps"
        rv = http.get(path).json()["metadata"]["resourceVersion"]
        http.post(path, json=_cm("a", {"app": "no"}))
        merge = {"Content-Type": "application/merge-patch+json"}
        http.patch(f"{path}/a", json={"metadata": {"labels": {"app": "yes"}}}, headers=merge)
        http.patch(f"{path}/a", json={"data": {"x": "1"}}, headers=merge)
        http.patch(f"{path}/a", json={"metadata": {"labels": {"app": "no"}}}, headers=merge)
        events, _ = _events(http, path, {"resourceVersion": rv, "labelSelector": "app=yes"}, 3)
        assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]


def test_bookmarks_and_initial_events(emulator: Emulator) -> None:
    with httpx.Client(base_url=emulator.url, timeout=10) as http:
        path = "/api/v1/namespaces/default/configmaps"
        http.post(path, json=_cm("a"))
        rv = http.get(path).json()["metadata"]["resourceVersion"]
        events, _ = _events(http, path, {"resourceVersion": rv, "allowWatchBookmarks": "true"}, 1)
        assert events[0]["type"] == "BOOKMARK"
        assert events[0]["object"]["metadata"]["resourceVersion"] == rv

        events, _ = _events(
            http,
            path,
            {
                "sendInitialEvents": "true",
                "resourceVersionMatch": "NotOlderThan",
                "allowWatchBookmarks": "true",
            },
            2,
        )
        assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
        annotations = events[1]["object"]["metadata"]["annotations"]
        assert annotations == {"k8s.io/initial-events-end": "true"}


def test_official_client_watch_sees_live_changes(emulator: Emulator, api_client: Any) -> None:
    core = k8s.CoreV1Api(api_client)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm("live"))
    seen = []
    for event in watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=2
    ):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "ADDED":
            core.delete_namespaced_config_map("live", "default")
        if event["type"] == "DELETED":
            break
    assert seen == [("ADDED", "live"), ("DELETED", "live")]
