"""Generate the CustomResourceDefinition from the pydantic models.

Pydantic emits JSON Schema 2020-12 with `$ref`s and `anyOf: [X, null]` for optionals;
Kubernetes wants a structural OpenAPI v3 schema: everything inlined, one type per node,
no `additionalProperties: false` beside `properties`. This module does that translation,
so the CRD in `crds/` is never edited by hand (a test keeps the checked-in file equal).
"""

from __future__ import annotations

from typing import Any

import yaml

from .spec import (
    API_GROUP,
    API_VERSION,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    MultiTaskDeploymentSpec,
)
from .status import MultiTaskDeploymentStatus

_DROP_KEYS = {"title", "$defs", "additionalProperties", "discriminator", "examples"}

PRINTER_COLUMNS = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {
        "name": "Qualified",
        "type": "string",
        "description": "Qualified tasks out of all tasks.",
        "jsonPath": ".status.qualified",
    },
    {"name": "Tasks", "type": "integer", "jsonPath": ".status.taskCount"},
    {
        "name": "Inconclusive",
        "type": "integer",
        "description": "Tasks whose ratio interval straddles the threshold, or with too few "
        "eval examples.",
        "jsonPath": ".status.inconclusiveCount",
    },
    {
        "name": "Unqualified",
        "type": "integer",
        "priority": 1,
        "description": "Tasks whose whole ratio interval is below the threshold.",
        "jsonPath": ".status.notQualifiedCount",
    },
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1:
            return _resolve({**variants[0], **rest}, defs)
        raise ValueError(f"cannot express a union in a structural schema: {node}")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS:
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            out[key] = {name: _resolve(sub, defs) for name, sub in value.items()}
        elif key == "default" and value is None:
            continue
        else:
            out[key] = _resolve(value, defs)
    # JSON Schema 2020 exclusive bounds are numbers; OpenAPI v3.0 uses booleans.
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in out and not isinstance(out[bound], bool):
            out[flag] = out[bound]
            out[bound] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "additionalProperties" in node and isinstance(node["additionalProperties"], dict):
        out["additionalProperties"] = _resolve(node["additionalProperties"], defs)
    return out


def openapi_schema(model: type, mode: str = "validation") -> dict[str, Any]:
    """A model's structural OpenAPI v3 schema (defaults kept, so the server applies them)."""
    schema = model.model_json_schema(by_alias=True, mode=mode)
    return _resolve(schema, schema.get("$defs", {}))


def build_crd() -> dict[str, Any]:
    spec_schema = openapi_schema(MultiTaskDeploymentSpec)
    spec_schema["description"] = "The tasks to train together and serve as one model."
    status_schema = openapi_schema(MultiTaskDeploymentStatus, mode="serialization")
    status_schema["description"] = "Observed state, rewritten by the operator on every pass."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{API_GROUP}"},
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A set of NLP tasks trained into one multi-task "
                            "LLM and served by one deployment.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `mtd crd` from operator/mtd_operator/api; do not edit by hand.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100, allow_unicode=True)
