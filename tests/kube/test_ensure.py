"""kube/ensure.py with recording fake clients: the one rule per kind, call by call."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from mtd_operator.kube.ensure import Ensure


class Recorder:
    """A typed client stand-in: records calls; answers from `existing` (by name)."""

    def __init__(self, existing: dict[str, dict] | None = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.existing = existing or {}
        self.api_client = SimpleNamespace(sanitize_for_serialization=lambda obj: obj)

    def __getattr__(self, method: str):
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((method, args, kwargs))
            if method.startswith("create_") and args[1]["metadata"]["name"] in self.existing:
                raise ApiException(status=409)
            if method.startswith("read_"):
                if args[0] not in self.existing:
                    raise ApiException(status=404)
                return self.existing[args[0]]
            return None

        return call


def ensure_with(existing: dict[str, dict] | None = None):
    client = Recorder(existing)
    api = SimpleNamespace(core=client, apps=client, batch=client, networking=client)
    return Ensure(api), client


def obj(kind: str, name: str = "x", **fields: Any) -> dict[str, Any]:
    return {"kind": kind, "metadata": {"name": name, "namespace": "ml"}, **fields}


def methods(client: Recorder) -> list[str]:
    return [name for name, _, _ in client.calls]


def test_a_new_object_is_created_once():
    ensure, client = ensure_with()
    assert ensure.apply(obj("Job")) == "created"
    assert methods(client) == ["create_namespaced_job"]


@pytest.mark.parametrize("kind", ["Job", "Service", "NetworkPolicy"])
def test_created_only_kinds_are_left_as_they_are(kind):
    ensure, client = ensure_with({"x": {}})
    assert ensure.apply(obj(kind, spec={"a": 1})) == "unchanged"
    assert len(client.calls) == 1 and methods(client)[0].startswith("create_")


def test_a_config_map_that_differs_gets_a_merge_patch_of_its_data_and_annotations():
    ensure, client = ensure_with({"x": {}})
    desired = obj("ConfigMap", data={"k": "new"})
    desired["metadata"]["annotations"] = {"rev": "2"}
    assert ensure.apply(desired, current={"data": {"k": "old"}}) == "updated"
    [(method, args, kwargs)] = client.calls  # listed: no create attempt
    assert method == "patch_namespaced_config_map"
    assert args == ("x", "ml", {"data": {"k": "new"}, "metadata": {"annotations": {"rev": "2"}}})
    assert kwargs == {"_content_type": "application/merge-patch+json"}


def test_an_unchanged_or_frozen_config_map_costs_no_call():
    ensure, client = ensure_with({"x": {}})
    assert ensure.apply(obj("ConfigMap", data={"k": "v"}), current={"data": {"k": "v"}}) == (
        "unchanged"
    )
    assert ensure.apply(
        obj("ConfigMap", data={"k": "new"}), current={"data": {}}, update=False
    ) == ("unchanged")
    assert client.calls == []


def test_a_secret_is_never_read_its_data_is_merged_in():
    ensure, client = ensure_with({"x": {}})
    assert ensure.apply(obj("Secret", stringData={"key": "k"})) == "updated"
    assert methods(client) == ["create_namespaced_secret", "patch_namespaced_secret"]
    assert client.calls[1][1][2] == {"stringData": {"key": "k"}}


def test_a_deployment_is_replaced_whole_when_a_field_we_set_differs():
    live = obj("Deployment", spec={"replicas": 1, "template": {"c": ["old"]}})
    live["metadata"]["resourceVersion"] = "7"
    live["status"] = {"ready": 1}  # the server's, not ours
    ensure, client = ensure_with({"x": live})
    desired = obj("Deployment", spec={"replicas": 1, "template": {"c": ["new"]}})
    assert ensure.apply(desired) == "updated"
    assert methods(client) == ["read_namespaced_deployment", "replace_namespaced_deployment"]
    replacement = client.calls[1][1][2]
    assert replacement["spec"] == desired["spec"]
    assert replacement["metadata"]["resourceVersion"] == "7"  # a concurrent change: 409

    ensure, client = ensure_with({"x": live})
    assert ensure.apply(obj("Deployment", spec={"replicas": 1})) == "unchanged"
    assert methods(client) == ["read_namespaced_deployment"]


def test_a_missing_deployment_is_created():
    ensure, client = ensure_with()
    assert ensure.apply(obj("Deployment", spec={})) == "created"
    assert methods(client) == ["read_namespaced_deployment", "create_namespaced_deployment"]


def test_other_api_errors_surface():
    ensure, _ = ensure_with()

    def refused(*_: Any, **__: Any) -> None:
        raise ApiException(status=403)

    ensure.calls["Job"] = ensure.calls["Job"].__class__(refused)
    with pytest.raises(ApiException):
        ensure.apply(obj("Job"))
