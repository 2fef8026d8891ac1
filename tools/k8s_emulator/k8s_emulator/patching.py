"""PATCH semantics: JSON merge patch, strategic merge patch (approximated) and JSON patch.

kopf sends merge patches for handler results and JSON patches with a ``test`` on
``metadata.resourceVersion`` for finalizers; kubectl apply sends strategic merge patches
for built-in kinds and merge patches for custom resources. The strategic variant is
treated as a merge patch plus the ``$patch``/``$retainKeys`` directives being dropped:
enough for the fields our operator and tests touch (no lists merged by key).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .errors import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$"):  # strategic-merge directives: not emulated
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def apply_patch(obj: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Apply a PATCH body of the given content type; raise ``ApiError`` like the server."""
    ctype = (content_type or "").split(";")[0].strip().lower()
    if ctype in (MERGE, STRATEGIC, APPLY, "application/json"):
        if not isinstance(patch, dict):
            raise ApiError.bad_request("the body of a merge patch must be a JSON object")
        return merge_patch(obj, patch)
    if ctype == JSON_PATCH:
        if not isinstance(patch, list):
            raise ApiError.bad_request("the body of a JSON patch must be a JSON array")
        try:
            return jsonpatch.apply_patch(obj, patch, in_place=False)
        except jsonpatch.JsonPatchTestFailed as exc:
            # The real server answers a failed ``test`` with 422 (kopf relies on it).
            raise ApiError(422, "Invalid", f"the server rejected our request: {exc}") from exc
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
            raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
    raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                   f"format - accepted media types include: {JSON_PATCH}, {MERGE}, {STRATEGIC}")
