"""CRD registration and custom-resource schema handling: 422, defaults, pruning."""

from __future__ import annotations

import pathlib
from typing import Any

import httpx
import jsonschema
import yaml

from k8s_emulator import Emulator
from k8s_emulator.schema import to_jsonschema
from mtd_operator.api.crd import build_crd
from tests.core.specs import resource
from tests.core.test_compositions import composition, spec_of, tasks
from tests.emulator.conftest import WIDGETS_CRD

CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
W = "/apis/test.example.com/v1/namespaces/default/widgets"


def _widget(spec: dict[str, Any], name: str = "w") -> dict[str, Any]:
    return {
        "apiVersion": "test.example.com/v1",
        "kind": "Widget",
        "metadata": {"name": name},
        "spec": spec,
    }


def test_posting_a_crd_serves_the_resource(emulator: Emulator) -> None:
    crd = yaml.safe_load(WIDGETS_CRD.read_text())
    with httpx.Client(base_url=emulator.url) as http:
        assert http.get(W).status_code == 404
        created = http.post(CRDS, json=crd)
        assert created.status_code == 201
        conditions = {c["type"]: c["status"] for c in created.json()["status"]["conditions"]}
        assert conditions == {"NamesAccepted": "True", "Established": "True"}
        resources = {
            r["name"]: r for r in http.get("/apis/test.example.com/v1").json()["resources"]
        }
        assert resources["widgets"]["kind"] == "Widget"
        assert resources["widgets"]["shortNames"] == ["wg"]
        assert "widgets/status" in resources
        assert http.get(W).json()["kind"] == "WidgetList"

        # Deleting the CRD removes its objects and stops serving the resource.
        http.post(W, json=_widget({"size": 1}))
        assert http.delete(f"{CRDS}/widgets.test.example.com").status_code == 200
        assert http.get(W).status_code == 404
        assert "test.example.com" not in {g["name"] for g in http.get("/apis").json()["groups"]}


def test_crd_name_must_match_plural_and_group(emulator: Emulator) -> None:
    crd = yaml.safe_load(WIDGETS_CRD.read_text())
    crd["metadata"]["name"] = "wrong.test.example.com"
    with httpx.Client(base_url=emulator.url) as http:
        resp = http.post(CRDS, json=crd)
    assert resp.status_code == 422
    assert resp.json()["details"]["causes"][0]["field"] == "metadata.name"


def test_invalid_custom_resources_get_422_with_causes(emulator: Emulator, widgets: str) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        resp = http.post(W, json=_widget({"color": "purple", "size": "big"}))
        assert resp.status_code == 422
        status = resp.json()
        assert status["reason"] == "Invalid" and status["kind"] == "Status"
        causes = {c["field"]: c for c in status["details"]["causes"]}
        assert causes["spec.color"]["reason"] == "FieldValueNotSupported"
        assert causes["spec.size"]["reason"] == "FieldValueTypeInvalid"
        assert status["message"].startswith('Widget.test.example.com "w" is invalid: [')

        missing = http.post(W, json=_widget({}))
        assert missing.json()["details"]["causes"] == [
            {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.size"}
        ]

        # OpenAPI 3.0 boolean exclusive bounds (draft 7 has numbers): 0 < ratio.
        assert http.post(W, json=_widget({"size": 1, "ratio": 0})).status_code == 422
        assert http.post(W, json=_widget({"size": 1, "ratio": 0.5}, name="r")).status_code == 201

        too_small = http.post(W, json=_widget({"size": 0}))
        assert too_small.status_code == 422
        assert too_small.json()["details"]["causes"][0]["field"] == "spec.size"

        # Patches are validated too, and a rejected patch changes nothing.
        assert http.post(W, json=_widget({"size": 1})).status_code == 201
        bad = http.patch(
            f"{W}/w",
            json={"spec": {"size": -1}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert bad.status_code == 422
        assert http.get(f"{W}/w").json()["spec"]["size"] == 1


def test_defaults_pruning_and_strict_field_validation(emulator: Emulator, widgets: str) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        body = _widget({"size": 1, "unknown": True, "extra": {"anything": {"goes": 1}}})
        body["top"] = "dropped"
        created = http.post(W, json=body).json()
        assert created["spec"] == {"size": 1, "color": "red", "extra": {"anything": {"goes": 1}}}
        assert "top" not in created

        strict = http.post(
            W,
            params={"fieldValidation": "Strict"},
            json=_widget({"size": 1, "unknown": True}, name="s"),
        )
        assert strict.status_code == 400
        assert 'unknown field "spec.unknown"' in strict.json()["message"]


def test_status_is_validated_on_the_status_subresource(emulator: Emulator, widgets: str) -> None:
    with httpx.Client(base_url=emulator.url) as http:
        http.post(W, json=_widget({"size": 1}))
        bad = http.patch(
            f"{W}/w/status",
            json={"status": {"conditions": [{"type": "Ready"}]}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert bad.status_code == 422
        assert bad.json()["details"]["causes"][0]["field"] == "status.conditions[0].status"


def test_multi_version_crd_shares_storage(emulator: Emulator) -> None:
    crd = yaml.safe_load(WIDGETS_CRD.read_text())
    v1 = crd["spec"]["versions"][0]
    beta = {**v1, "name": "v1beta1", "storage": False}
    crd["spec"]["versions"] = [beta, v1]
    with httpx.Client(base_url=emulator.url) as http:
        assert http.post(CRDS, json=crd).status_code == 201
        group = http.get("/apis/test.example.com").json()
        assert group["preferredVersion"]["version"] == "v1"
        assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
        http.post(
            "/apis/test.example.com/v1beta1/namespaces/default/widgets",
            json={**_widget({"size": 2}), "apiVersion": "test.example.com/v1beta1"},
        )
        got = http.get(f"{W}/w").json()
        assert got["apiVersion"] == "test.example.com/v1" and got["spec"]["size"] == 2
        listed = http.get("/apis/test.example.com/v1beta1/widgets").json()
        assert listed["apiVersion"] == "test.example.com/v1beta1"
        assert listed["items"][0]["apiVersion"] == "test.example.com/v1beta1"


def test_leases_are_served(emulator: Emulator) -> None:
    path = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    with httpx.Client(base_url=emulator.url) as http:
        lease = {"metadata": {"name": "leader"}, "spec": {"holderIdentity": "me"}}
        assert http.post(path, json=lease).status_code == 201
        assert http.get(f"{path}/leader").json()["spec"]["holderIdentity"] == "me"


ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_project_crds_and_examples_are_accepted(emulator: Emulator) -> None:
    """The project's own CRDs register, and its example resources pass their schema."""
    crds = sorted((ROOT / "crds").glob("*.yaml"))
    assert crds, "crds/ holds the project's CRD (`make crd` writes it)"
    for path in crds:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                emulator.create(doc)
    for path in sorted((ROOT / "examples").glob("*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or "apiVersion" not in doc:
                continue
            try:
                res = emulator.resource_of(doc)
            except KeyError:
                continue  # not a kind served here
            created = emulator.store.create(res, "default", doc, field_validation="Strict")
            assert created["metadata"]["uid"], path


# The project's CRD schema, as this emulator's validation sees it (kept out of the pure
# core tests, which import no emulator).
def test_the_crd_schema_accepts_a_composition_and_rejects_a_bad_merge() -> None:
    schema = to_jsonschema(build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    validator = jsonschema.Draft7Validator(schema)
    spec = spec_of(composition(weights=[0.7, 0.3], merge="ties", density=0.4))
    doc = {**resource(tasks()), "spec": spec.to_api()}
    validator.validate(doc)
    doc["spec"]["compositions"][0]["merge"] = "average"
    assert not validator.is_valid(doc)
