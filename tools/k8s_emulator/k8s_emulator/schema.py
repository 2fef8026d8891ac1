"""Custom-resource schema handling: pruning, defaulting and validation like the API server.

A real server prunes fields unknown to a structural schema, applies ``default`` values and
rejects invalid objects with 422 and one ``cause`` per bad field. An operator that depends
on a field the CRD does not declare works against a lenient mock and breaks on a cluster;
emulating these three steps catches that here.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonschema
import jsonschema.exceptions

# Metadata fields that survive pruning of ``metadata`` in a custom resource.
_META_KEEP = {
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels",
    "annotations", "ownerReferences", "finalizers", "managedFields", "selfLink",
}


def prune(value: Any, schema: Mapping[str, Any] | None, *, root: bool = False) -> Any:
    """Drop fields the structural schema does not know (unless it preserves unknowns)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        if schema.get("x-kubernetes-embedded-resource") or root:
            value = {
                k: (v if k != "metadata" or not isinstance(v, dict)
                    else {mk: mv for mk, mv in v.items() if mk in _META_KEEP})
                for k, v in value.items()
            }
        props: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        result: dict[str, Any] = {}
        for key, item in value.items():
            if root and key in ("apiVersion", "kind", "metadata"):
                result[key] = item
            elif key in props:
                result[key] = prune(item, props[key])
            elif isinstance(additional, Mapping):
                result[key] = prune(item, additional)
            elif additional is True or preserve:
                result[key] = item
        return result
    if isinstance(value, list):
        items = schema.get("items")
        return [prune(v, items if isinstance(items, Mapping) else None) for v in value]
    return value


def unknown_fields(before: Any, after: Any, path: str = "") -> list[str]:
    """The dotted paths that pruning removed (for ``fieldValidation=Strict``)."""
    found: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        for key, value in before.items():
            sub = f"{path}.{key}" if path else key
            if key not in after:
                found.append(sub)
            else:
                found.extend(unknown_fields(value, after[key], sub))
    elif isinstance(before, list) and isinstance(after, list):
        for idx, (b, a) in enumerate(zip(before, after, strict=False)):
            found.extend(unknown_fields(b, a, f"{path}[{idx}]"))
    return found


def apply_defaults(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """Fill ``default`` values for absent properties of present objects (recursively)."""
    if schema is None:
        return value
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(value[key], sub)
        additional = schema.get("additionalProperties")
        if isinstance(additional, Mapping):
            for key in list(value):
                if key not in props:
                    value[key] = apply_defaults(value[key], additional)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            return [apply_defaults(v, items) for v in value]
    return value


def to_jsonschema(schema: Any) -> Any:
    """Translate OpenAPI v3 (Kubernetes flavour) into plain JSON Schema.

    ``nullable`` becomes a ``null`` type alternative, ``x-kubernetes-int-or-string`` an
    ``anyOf``; ``metadata`` of the root is left to the server's own checks.
    """
    if isinstance(schema, list):
        return [to_jsonschema(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "default", "format"):
            continue
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: to_jsonschema(v) for k, v in value.items()}
        else:
            out[key] = to_jsonschema(value)
    # OpenAPI 3.0 (like JSON Schema draft 4) has boolean exclusive bounds; draft 7 numbers.
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool) and out.pop(bound) and limit in out:
            out[bound] = out.pop(limit)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out = {"anyOf": [{"type": "integer"}, {"type": "string"}], **out}
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [
            *out["type"], "null"]
    return out


def _path(parts: Any) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 80 else text[:77] + "..."


def _cause(error: jsonschema.exceptions.ValidationError) -> dict[str, str]:
    """Phrase one jsonschema error the way the API server phrases a field cause."""
    field = _path(error.absolute_path)
    validator = error.validator
    if validator == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else "?"
        field = f"{field}.{missing}" if field else missing
        return {"reason": "FieldValueRequired", "message": "Required value", "field": field}
    if validator == "enum":
        supported = ", ".join(_short(v) for v in error.validator_value)
        return {
            "reason": "FieldValueNotSupported",
            "message": f"Unsupported value: {_short(error.instance)}: "
                       f"supported values: {supported}",
            "field": field,
        }
    if validator == "type":
        expected = error.validator_value
        expected_text = expected if isinstance(expected, str) else " or ".join(expected)
        return {
            "reason": "FieldValueTypeInvalid",
            "message": f"Invalid value: {_short(error.instance)}: {field} in body must be of "
                       f"type {expected_text}: {_short(error.instance)}",
            "field": field,
        }
    return {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {_short(error.instance)}: {field} in body {error.message}",
        "field": field,
    }


def validate(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> list[dict[str, str]]:
    """Return the field causes of all violations (empty when the object is valid)."""
    plain = to_jsonschema(schema)
    props = dict(plain.get("properties") or {})
    props.pop("metadata", None)  # metadata is validated by the server itself
    plain = {**plain, "properties": props}
    validator = jsonschema.Draft7Validator(plain)
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    causes: list[dict[str, str]] = []
    for error in errors:
        # anyOf/oneOf produce one vague error: descend to the most specific one.
        best = jsonschema.exceptions.best_match([error]) if error.context else error
        causes.append(_cause(best))
    return causes
