"""The status is written with a JSON merge patch: what a pass no longer reports must go."""

from __future__ import annotations

from typing import Any

from mtd_operator.kube.controller import status_merge_patch


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 MergePatch, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge(result.get(key), value)
    return result


OLD = {
    "planHash": "abc",
    "serving": {"engine": "vllm", "url": "http://x", "gateway": "http://g"},
    "cost": {"singleTaskDeployments": 3},
    "conditions": [{"type": "Ready", "status": "True"}],
    "tasks": [{"name": "a"}, {"name": "b"}],
    "kopf": {"progress": {}},  # someone else's key
}


def test_dropped_fields_are_removed_and_others_keys_kept():
    new = {
        "serving": {"engine": "tgi", "url": "http://y"},
        "conditions": [{"type": "Ready", "status": "False"}],
        "tasks": [{"name": "a"}],
    }
    patch = status_merge_patch(OLD, new)
    assert patch["planHash"] is None and patch["cost"] is None
    assert patch["serving"]["gateway"] is None
    assert "kopf" not in patch
    assert merge(OLD, patch) == {**new, "kopf": {"progress": {}}}


def test_an_unchanged_shape_is_the_new_status_itself():
    new = {**OLD, "planHash": "def"}
    new.pop("kopf")
    assert status_merge_patch(OLD, new) == new
