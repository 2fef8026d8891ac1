"""values.yaml documents every value, and values.schema.json knows exactly those values."""

from __future__ import annotations

import json
import re

import yaml

from .conftest import CHART

VALUES_TEXT = (CHART / "values.yaml").read_text(encoding="utf-8")
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
KEY_LINE = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z][\w.-]*):")


def test_every_value_is_commented():
    lines = VALUES_TEXT.splitlines()
    uncommented = []
    for index, line in enumerate(lines):
        match = KEY_LINE.match(line)
        if not match:
            continue
        above = lines[index - 1] if index else ""
        if not above.startswith(match["indent"] + "#"):
            uncommented.append(f"line {index + 1}: {match['key']}")
    assert not uncommented, "values without a comment right above: " + ", ".join(uncommented)


def resolve(node: dict) -> dict:
    while "$ref" in node:
        node = SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
    return node


def test_schema_objects_forbid_unknown_keys():
    """Every object the chart defines is closed; only Kubernetes objects pass through."""

    def walk(node: dict, path: str) -> None:
        node = resolve(node)
        if "properties" in node:
            assert node.get("additionalProperties") is False, f"{path}: not closed"
            for key, child in node["properties"].items():
                walk(child, f"{path}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(SCHEMA, "values")


def test_schema_and_values_have_the_same_keys():
    def keys(values: dict, schema: dict, path: str) -> None:
        schema = resolve(schema)
        if "properties" not in schema:
            return  # a map (annotations, nodeSelector) or a Kubernetes object
        declared = set(schema["properties"]) - {"global"}
        assert set(values) == declared, f"{path}: values.yaml {set(values) ^ declared}"
        for key, value in values.items():
            if isinstance(value, dict):
                keys(value, schema["properties"][key], f"{path}.{key}")

    keys(VALUES, SCHEMA, "values")
