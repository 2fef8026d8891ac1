"""API-server rules the emulator enforces (validation.py, selectors.py, patching.py).

One test per rule; each sends what a real kube-apiserver rejects and expects its answer
(code, reason, causes and message), so an operator that renders an invalid object fails
here instead of on a cluster.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from k8s_emulator import Emulator

NS = "/api/v1/namespaces/default"
JOBS = "/apis/batch/v1/namespaces/default/jobs"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
WIDGETS = "/apis/test.example.com/v1/namespaces/default/widgets"
SMP = {"Content-Type": "application/strategic-merge-patch+json"}
MERGE = {"Content-Type": "application/merge-patch+json"}


@pytest.fixture
def http(emulator: Emulator) -> httpx.Client:
    with httpx.Client(base_url=emulator.url) as client:
        yield client


def _invalid(resp: httpx.Response) -> tuple[str, list[str]]:
    """Assert a 422 Invalid Status; return its message and the causes' fields."""
    assert resp.status_code == 422, resp.text
    status = resp.json()
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    return status["message"], [c["field"] for c in status["details"]["causes"]]


def _cm(name: str, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **extra}


def _job(name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "template": {
                "metadata": {"labels": labels or {}},
                "spec": {
                    "restartPolicy": "Never",
                    **spec.pop("pod", {}),
                    "containers": [{"name": "main", "image": "x"}],
                },
            },
            **spec,
        },
    }


def _deployment(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "image": "a:1",
                            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        },
                        {"name": "b", "image": "b:1"},
                    ]
                },
            },
        },
    }


def test_names_follow_the_kinds_rule(http: httpx.Client) -> None:
    """Rule 1: Services DNS-1035 labels, Namespaces DNS-1123 labels, the rest
    subdomains; a Job name must also fit in a label value (<= 63 characters)."""
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "1st-model-serving"},
        "spec": {"ports": [{"port": 80}]},
    }
    message, fields = _invalid(http.post(f"{NS}/services", json=svc))
    assert fields == ["metadata.name"]
    assert message == (
        'Service "1st-model-serving" is invalid: metadata.name: Invalid value: '
        '"1st-model-serving": a DNS-1035 label must consist of lower case alphanumeric '
        "characters or '-', start with an alphabetic character, and end with an alphanumeric "
        "character (e.g. 'my-name',  or 'abc-123', regex used for validation is "
        "'[a-z]([-a-z0-9]*[a-z0-9])?')"
    )
    # A dotted name is a fine ConfigMap name but no Service or Namespace name.
    assert http.post(f"{NS}/configmaps", json=_cm("model.v1")).status_code == 201
    svc["metadata"]["name"] = "model.v1"
    assert _invalid(http.post(f"{NS}/services", json=svc))[1] == ["metadata.name"]
    message, _ = _invalid(http.post("/api/v1/namespaces", json={"metadata": {"name": "team.a"}}))
    assert message.endswith('metadata.name: Invalid value: "team.a": must not contain dots')
    message, _ = _invalid(http.post(f"{NS}/configmaps", json=_cm("x" * 254)))
    assert "must be no more than 253 characters" in message

    # A 64-character Job name: the server copies it into the pod template's labels.
    long_name = "j" * 64
    message, fields = _invalid(http.post(JOBS, json=_job(long_name)))
    assert fields == ["spec.template.labels", "spec.template.labels"]
    assert message == (
        f'Job.batch "{long_name}" is invalid: spec.template.labels: Invalid '
        f'value: "{long_name}": must be no more than 63 characters'
    )
    assert http.post(JOBS, json=_job("j" * 63)).status_code == 201
    # An Indexed Job whose last pod hostname (<name>-<completions-1>) is no DNS label.
    message, fields = _invalid(
        http.post(
            JOBS, json=_job("i" * 62, completionMode="Indexed", completions=10, parallelism=10)
        )
    )
    assert fields == ["metadata.name"]
    assert message.endswith(f"will not able to create pod with invalid DNS label: {'i' * 62}-9")


def test_label_keys_and_values_are_checked_everywhere(http: httpx.Client, widgets: str) -> None:
    """Rule 2: metadata.labels, pod-template labels and selectors' matchLabels."""
    long_value = "v" * 64
    message, fields = _invalid(
        http.post(
            f"{NS}/configmaps", json=_cm("c", metadata={"name": "c", "labels": {"run": long_value}})
        )
    )
    assert fields == ["metadata.labels"]
    assert message == (
        f'ConfigMap "c" is invalid: metadata.labels: Invalid value: '
        f'"{long_value}": must be no more than 63 characters'
    )
    _, fields = _invalid(
        http.post(
            f"{NS}/configmaps",
            json=_cm("c", metadata={"name": "c", "labels": {"a/b/c": "x", "-x": "y"}}),
        )
    )
    assert fields == ["metadata.labels", "metadata.labels"]

    _, fields = _invalid(http.post(DEPLOYMENTS, json=_deployment("d", {"app": long_value})))
    assert fields == ["spec.selector.matchLabels", "spec.template.labels"]
    _, fields = _invalid(http.post(JOBS, json=_job("j", labels={"task": "bad value"})))
    assert fields == ["spec.template.labels"]

    # Custom resources too, and a patch result as much as a create.
    widget = {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "labels": {"k": "x" * 70}},
        "spec": {"size": 1},
    }
    assert _invalid(http.post(WIDGETS, json=widget))[1] == ["metadata.labels"]
    widget["metadata"]["labels"] = {"k": "ok"}
    assert http.post(WIDGETS, json=widget).status_code == 201
    patch = {"metadata": {"labels": {"k": "x" * 70}}}
    assert _invalid(http.patch(f"{WIDGETS}/w", json=patch, headers=MERGE))[1] == ["metadata.labels"]


def test_bad_label_selectors_get_400(http: httpx.Client) -> None:
    """Rule 3: ?labelSelector= is parsed like labels.Parse; errors are 400 BadRequest."""
    assert (
        http.post(
            f"{NS}/configmaps", json=_cm("c", metadata={"name": "c", "labels": {"n": "5"}})
        ).status_code
        == 201
    )
    long_value = "v" * 64
    resp = http.get(f"{NS}/configmaps", params={"labelSelector": f"run={long_value}"})
    assert resp.status_code == 400
    assert resp.json()["reason"] == "BadRequest"
    assert resp.json()["message"] == (
        f'unable to parse requirement: values[0][run]: Invalid value: "{long_value}": '
        "must be no more than 63 characters"
    )
    watch = http.get(
        f"{NS}/configmaps", params={"watch": "true", "labelSelector": f"run in ({long_value})"}
    )
    assert watch.status_code == 400
    for bad in ("app in x", "a=b,", "=x", "a/b/c=1", "a=b c"):
        resp = http.get(f"{NS}/configmaps", params={"labelSelector": bad})
        assert resp.status_code == 400, bad
    # What labels.Parse accepts still selects (Gt/Lt included).
    for good, expected in (
        ("n>4", ["c"]),
        ("n<4", []),
        ("n in (5, 6)", ["c"]),
        ("!n", []),
        ("n", ["c"]),
    ):
        items = http.get(f"{NS}/configmaps", params={"labelSelector": good}).json()["items"]
        assert [i["metadata"]["name"] for i in items] == expected, good


def test_annotations_are_limited_to_256_kib(http: httpx.Client, widgets: str) -> None:
    """Rule 4: keys plus values over 262144 bytes: 422, on custom resources and patches."""
    big = {"kopf.zalando.org/last-handled-configuration": "x" * 262144}
    message, fields = _invalid(
        http.post(f"{NS}/configmaps", json=_cm("c", metadata={"name": "c", "annotations": big}))
    )
    assert fields == ["metadata.annotations"]
    assert message == (
        'ConfigMap "c" is invalid: metadata.annotations: Too long: must have at most 262144 bytes'
    )
    widget = {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    assert http.post(WIDGETS, json=widget).status_code == 201
    resp = http.patch(f"{WIDGETS}/w", json={"metadata": {"annotations": big}}, headers=MERGE)
    message, fields = _invalid(resp)
    assert fields == ["metadata.annotations"]
    assert message.startswith('Widget.test.example.com "w" is invalid: metadata.annotations')
    just_fits = {"a": "x" * (262144 - 1)}
    assert (
        http.patch(
            f"{WIDGETS}/w", json={"metadata": {"annotations": just_fits}}, headers=MERGE
        ).status_code
        == 200
    )


def test_config_maps_hold_at_most_1_mib(http: httpx.Client) -> None:
    """Rule 5: data plus (decoded) binaryData over 1048576 bytes: 422."""
    half = "x" * (512 * 1024)
    blob = base64.b64encode(b"y" * (512 * 1024 + 1)).decode()
    message, fields = _invalid(
        http.post(f"{NS}/configmaps", json=_cm("c", data={"a": half}, binaryData={"b": blob}))
    )
    assert fields == ["[]"]
    assert message == 'ConfigMap "c" is invalid: []: Too long: must have at most 1048576 bytes'
    assert http.post(f"{NS}/configmaps", json=_cm("c", data={"a": half})).status_code == 201
    resp = http.patch(f"{NS}/configmaps/c", json={"data": {"b": half + "z"}}, headers=MERGE)
    assert _invalid(resp)[1] == ["[]"]


def test_pod_hostname_and_subdomain_are_dns_labels(http: httpx.Client) -> None:
    """Rule 6: spec.hostname/subdomain of pods and pod templates: DNS-1123 labels."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "hostname": "h" * 64,
            "subdomain": "svc.x",
            "containers": [{"name": "main", "image": "x"}],
        },
    }
    message, fields = _invalid(http.post(f"{NS}/pods", json=pod))
    assert fields == ["spec.hostname", "spec.subdomain"]
    assert 'spec.subdomain: Invalid value: "svc.x": must not contain dots' in message
    _, fields = _invalid(http.post(JOBS, json=_job("j", pod={"subdomain": "s" * 64})))
    assert fields == ["spec.template.spec.subdomain"]
    assert http.post(JOBS, json=_job("j", pod={"subdomain": "s" * 63})).status_code == 201


def test_strategic_merge_patch_on_a_custom_resource_gets_415(
    http: httpx.Client, widgets: str
) -> None:
    """Rule 7: custom resources accept JSON, merge and apply patches only."""
    widget = {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"size": 1},
    }
    assert http.post(WIDGETS, json=widget).status_code == 201
    resp = http.patch(f"{WIDGETS}/w", json={"spec": {"size": 2}}, headers=SMP)
    assert resp.status_code == 415
    assert resp.json()["reason"] == "UnsupportedMediaType"
    assert resp.json()["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json, "
        "application/apply-patch+yaml"
    )
    # The status subresource too; and the check comes before the object lookup.
    assert http.patch(f"{WIDGETS}/w/status", json={}, headers=SMP).status_code == 415
    assert http.patch(f"{WIDGETS}/nope", json={}, headers=SMP).status_code == 415


def test_strategic_merge_patch_merges_lists_by_key(http: httpx.Client) -> None:
    """Rule 8: built-in kinds merge containers/env by name, and obey $patch directives."""
    assert http.post(DEPLOYMENTS, json=_deployment("d", {"app": "x"})).status_code == 201
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "a",
                            "env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}],
                        },
                    ]
                }
            }
        }
    }
    resp = http.patch(f"{DEPLOYMENTS}/d", json=patch, headers=SMP)
    assert resp.status_code == 200, resp.text
    containers = {c["name"]: c for c in resp.json()["spec"]["template"]["spec"]["containers"]}
    assert set(containers) == {"a", "b"}  # a merge patch would have dropped "b"
    assert containers["a"]["image"] == "a:1"
    assert {e["name"]: e.get("value") for e in containers["a"]["env"]} == {"A": "1", "C": "3"}
    assert resp.json()["metadata"]["generation"] == 2

    replace = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "c", "image": "c:1"}, {"$patch": "replace"}]}
            }
        }
    }
    resp = http.patch(f"{DEPLOYMENTS}/d", json=replace, headers=SMP)
    assert resp.status_code == 200, resp.text
    assert [c["name"] for c in resp.json()["spec"]["template"]["spec"]["containers"]] == ["c"]

    # The result is validated like any write.
    resp = http.patch(
        f"{DEPLOYMENTS}/d",
        headers=SMP,
        json={"spec": {"template": {"metadata": {"labels": {"v": "x" * 64}}}}},
    )
    assert _invalid(resp)[1] == ["spec.template.labels"]
    # Merge patches still replace lists whole.
    resp = http.patch(
        f"{DEPLOYMENTS}/d",
        headers=MERGE,
        json={"spec": {"template": {"spec": {"containers": [{"name": "d", "image": "d:1"}]}}}},
    )
    assert [c["name"] for c in resp.json()["spec"]["template"]["spec"]["containers"]] == ["d"]
