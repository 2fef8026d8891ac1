"""Server-side printing: ``meta.k8s.io/v1 Table`` responses for ``kubectl get``.

kubectl asks for Tables (``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``) and
prints the columns the server chose; for custom resources those are the CRD's
``additionalPrinterColumns``. Rendering them here is what makes ``kubectl get mtd`` in
the tests show the same columns a user sees on a cluster.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .resources import ResourceDef

_FILTER_RE = re.compile(r"^\?\(@\.([\w.]+)\s*==\s*[\"']([^\"']*)[\"']\)$")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """Evaluate the JSONPath subset used by printer columns.

    Supports ``.a.b``, ``[n]``, ``[*]`` and filters ``[?(@.type=="Ready")]``: the forms
    real CRDs use for columns such as a condition's status.
    """
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    if path.startswith("$"):
        path = path[1:]
    tokens: list[str] = []
    i = 0
    while i < len(path):
        if path[i] == ".":
            j = i + 1
            while j < len(path) and path[j] not in ".[":
                j += 1
            if j > i + 1:
                tokens.append(path[i + 1:j])
            i = j
        elif path[i] == "[":
            depth, j = 0, i
            while j < len(path):
                if path[j] == "[":
                    depth += 1
                elif path[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            tokens.append(path[i:j + 1])
            i = j + 1
        else:
            j = i
            while j < len(path) and path[j] not in ".[":
                j += 1
            tokens.append(path[i:j])
            i = j
    current: list[Any] = [obj]
    for token in tokens:
        nxt: list[Any] = []
        for value in current:
            if token.startswith("["):
                inner = token[1:-1].strip()
                if not isinstance(value, list):
                    continue
                if inner == "*":
                    nxt.extend(value)
                elif inner.lstrip("-").isdigit():
                    idx = int(inner)
                    if -len(value) <= idx < len(value):
                        nxt.append(value[idx])
                else:
                    match = _FILTER_RE.match(inner)
                    if match:
                        field, expected = match.groups()
                        for item in value:
                            got: Any = item
                            for part in field.split("."):
                                got = got.get(part) if isinstance(got, Mapping) else None
                            if got is not None and str(got) == expected:
                                nxt.append(item)
            elif isinstance(value, Mapping) and token in value:
                nxt.append(value[token])
        current = nxt
    return current


def _age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    seconds = int((datetime.datetime.now(tz=datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h"


def _cell(values: list[Any], col_type: str) -> Any:
    if not values:
        return None
    value = values[0]
    if col_type == "date":
        return _age(value if isinstance(value, str) else None)
    if col_type in ("integer", "number", "boolean"):
        return value
    if isinstance(value, dict | list):
        import json

        return json.dumps(value)
    return str(value)


_DEFAULT_COLUMNS: tuple[Mapping[str, Any], ...] = (
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
)

_BUILTIN_COLUMNS: dict[str, tuple[Mapping[str, Any], ...]] = {
    "Pod": (
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    "Job": (
        {"name": "Succeeded", "type": "integer", "jsonPath": ".status.succeeded"},
        {"name": "Failed", "type": "integer", "jsonPath": ".status.failed"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    "Deployment": (
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"},
        {"name": "Up-to-date", "type": "integer", "jsonPath": ".status.updatedReplicas"},
        {"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
    "Namespace": (
        {"name": "Status", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ),
}


def columns_for(res: ResourceDef) -> Sequence[Mapping[str, Any]]:
    if res.is_custom:
        cols = list(res.printer_columns)
        # Like the server: "Age" is appended when the CRD does not mention creationTimestamp.
        if not any(c.get("jsonPath") == ".metadata.creationTimestamp" for c in cols):
            cols.append(_DEFAULT_COLUMNS[0])
        return cols
    return _BUILTIN_COLUMNS.get(res.kind, _DEFAULT_COLUMNS)


def render_table(
    res: ResourceDef,
    objects: Sequence[Mapping[str, Any]],
    *,
    resource_version: str,
    include_object: str = "Metadata",
    continue_token: str | None = None,
) -> dict[str, Any]:
    """Render objects as a Table with a Name column first, as the server does."""
    cols = columns_for(res)
    definitions = [
        {"name": "Name", "type": "string", "format": "name",
         "description": "Name must be unique within a namespace.", "priority": 0},
    ] + [
        {
            "name": c.get("name", ""),
            "type": c.get("type", "string"),
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": int(c.get("priority", 0)),
        }
        for c in cols
    ]
    rows: list[dict[str, Any]] = []
    for obj in objects:
        cells: list[Any] = [obj.get("metadata", {}).get("name", "")]
        for col in cols:
            cells.append(_cell(jsonpath(obj, col.get("jsonPath", "")), col.get("type", "string")))
        row: dict[str, Any] = {"cells": cells}
        if include_object == "Object":
            row["object"] = dict(obj)
        elif include_object != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata", {}),
            }
        rows.append(row)
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }
