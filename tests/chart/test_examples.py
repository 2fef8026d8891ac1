"""Example resources pass the CRD's schema as the API server applies it, and mistakes fail
with the field path a user would see from `kubectl apply`.

The server validates against openAPIV3Schema and, with kubectl's default strict field
validation, rejects unknown fields; the schema is made closed here to do the same.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .conftest import ROOT

CRD = yaml.safe_load(
    (ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml").read_text(encoding="utf-8")
)
EXAMPLES = [
    path
    for path in sorted((ROOT / "examples").rglob("*.yaml"))
    if any(
        isinstance(doc, dict) and doc.get("kind") == "MultiTaskDeployment"
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
    )
]


def strict_schema(node: Any) -> Any:
    """OpenAPI v3.0 (draft-4 flavour) with unknown fields rejected, as strict validation."""
    if isinstance(node, list):
        return [strict_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict_schema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


VALIDATOR = jsonschema.Draft4Validator(
    strict_schema(CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
)


def field_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path


def errors(doc: dict) -> dict[str, str]:
    return {field_path(e): e.message for e in VALIDATOR.iter_errors(doc)}


def load(path: Path) -> dict:
    return next(
        d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d and d.get("kind")
    )


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_pass_strict_validation(path):
    assert errors(load(path)) == {}


def set_in(doc: dict, path: list, value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


@pytest.mark.parametrize(
    "where, value, expected_path, expected_message",
    [
        (["spec", "taks"], [], "spec", "'taks' was unexpected"),
        (["spec", "tasks", 0, "type"], "regression", "spec.tasks[0].type", "is not one of"),
        (["spec", "tasks", 0, "name"], "Not A Label", "spec.tasks[0].name", "does not match"),
        (["spec", "tasks", 1, "lables"], ["a"], "spec.tasks[1]", "'lables' was unexpected"),
        (["spec", "tasks"], [], "spec.tasks", "non-empty"),
        (["spec", "serving", "replicas"], "two", "spec.serving.replicas", "is not of type"),
        (["spec", "qualification", "threshold"], 0, "spec.qualification.threshold", "minimum"),
    ],
)
def test_mistakes_are_rejected_with_their_field_path(where, value, expected_path, expected_message):
    doc = copy.deepcopy(load(ROOT / "examples" / "minimal" / "mtd.yaml"))
    set_in(doc, where, value)
    found = errors(doc)
    assert expected_path in found, found
    assert expected_message in found[expected_path]


def test_a_missing_spec_is_rejected_at_the_root():
    doc = load(ROOT / "examples" / "minimal" / "mtd.yaml")
    assert (
        "'spec' is a required property" in errors({k: v for k, v in doc.items() if k != "spec"})[""]
    )
