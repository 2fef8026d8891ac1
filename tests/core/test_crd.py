"""The CRD is generated from the models, checked in, and agrees with the examples."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from mtd_operator.api.crd import build_crd, crd_yaml
from mtd_operator.specfile import load_resource

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml"
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def example_resources() -> list[Path]:
    return [p for p in EXAMPLES if "kind: MultiTaskDeployment" in p.read_text(encoding="utf-8")]


def crd_schema() -> dict:
    return build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def to_json_schema(node):
    """OpenAPI v3.0 → JSON Schema draft 4 flavours differ only in the bits we use."""
    if isinstance(node, dict):
        return {k: to_json_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    if isinstance(node, list):
        return [to_json_schema(v) for v in node]
    return node


def test_checked_in_crd_is_generated():
    assert CRD_FILE.read_text(encoding="utf-8") == crd_yaml(), "run: mtd crd > " + str(
        CRD_FILE.relative_to(ROOT)
    )


def test_crd_is_structural():
    """Every schema node has one type, objects list properties, no unions or refs."""

    def walk(schema: dict, path: str) -> None:
        for key in ("anyOf", "oneOf", "allOf", "$ref", "$defs"):
            assert key not in schema, f"{path}: {key}"
        assert "type" in schema, f"{path}: no type"
        if "properties" in schema:
            assert schema["type"] == "object", path
            assert "additionalProperties" not in schema, path
            for name, sub in schema["properties"].items():
                walk(sub, f"{path}.{name}")
        if "items" in schema:
            walk(schema["items"], f"{path}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}{{}}")

    walk(crd_schema(), "schema")


def test_printer_columns_and_names():
    crd = build_crd()
    assert crd["metadata"]["name"] == "multitaskdeployments.multitask.dev"
    assert crd["spec"]["names"]["shortNames"] == ["mtd"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names[:3] == ["Ready", "Qualified", "Tasks"] and names[-1] == "Age"


@pytest.mark.parametrize("path", example_resources(), ids=lambda p: p.name)
def test_examples_validate_against_models_and_crd(path):
    load_resource(path)
    jsonschema.Draft4Validator(to_json_schema(crd_schema())).validate(
        yaml.safe_load(path.read_text(encoding="utf-8"))
    )


def test_there_are_examples():
    assert example_resources(), "examples/ must hold MultiTaskDeployment samples"


@pytest.mark.parametrize(
    "mutation, field",
    [
        (lambda d: d["spec"]["tasks"][0].update(type="regression"), "type"),
        (lambda d: d["spec"].update(tasks=[]), "tasks"),
        (lambda d: d["spec"]["tasks"][0].update(name="Not A Label"), "name"),
        (
            lambda d: d["spec"].setdefault("training", {}).update(stage2={"temperature": 0.5}),
            "temperature",
        ),
    ],
)
def test_crd_schema_rejects_bad_resources(mutation, field):
    doc = yaml.safe_load(example_resources()[0].read_text(encoding="utf-8"))
    mutation(doc)
    with pytest.raises(jsonschema.ValidationError) as info:
        jsonschema.Draft4Validator(to_json_schema(crd_schema())).validate(doc)
    assert field in "/".join(str(p) for p in info.value.absolute_path) + info.value.message
