"""One way to bring a child object to what the builders rendered: `Ensure.apply`.

Every child the controller writes goes through here, with the same rule per kind:

* create it; an object that already exists (409) is then brought up to date or left;
* a Deployment that differs from the rendering is replaced whole, with the
  resourceVersion read as a precondition (a concurrent change is a 409: the next pass
  retries). Never a strategic merge patch: it merges containers, env and volumes by
  name, so an engine or method switch would keep the old engine's command and env;
* a ConfigMap or Secret gets a JSON merge patch of its data (their keys are fixed per
  object, so a merge is the whole update), only when the listed copy differs, or always
  for a Secret (the operator may not read Secrets; the same patch again is a no-op);
* an InferencePool or InferenceModelRewrite (another project's CRD) gets a JSON merge
  patch of its spec;
* Jobs, Services and NetworkPolicies are never updated: a Job's template is immutable
  and a changed step is a Job of another name (its step hash); the others are fixed by
  their name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from .metrics import METRICS

Outcome = Literal["created", "updated", "unchanged"]
# Every patch is a JSON merge patch (RFC 7386), said explicitly: for a dict body the
# client would send a strategic merge patch on built-in kinds.
MERGE_PATCH: dict[str, str] = {"_content_type": "application/merge-patch+json"}
REPLACED = ("Deployment",)
CREATED_ONLY = ("Job", "Service", "NetworkPolicy")


@dataclass(frozen=True)
class KindCalls:
    create: Callable[..., Any]
    patch: Callable[..., Any] | None = None
    read: Callable[..., Any] | None = None
    replace: Callable[..., Any] | None = None


def kind_calls(api: Any) -> dict[str, KindCalls]:
    """The typed client calls per kind (`api` is the controller's `Clients`)."""
    return {
        "ConfigMap": KindCalls(
            api.core.create_namespaced_config_map, patch=api.core.patch_namespaced_config_map
        ),
        "Secret": KindCalls(
            api.core.create_namespaced_secret, patch=api.core.patch_namespaced_secret
        ),
        "Deployment": KindCalls(
            api.apps.create_namespaced_deployment,
            read=api.apps.read_namespaced_deployment,
            replace=api.apps.replace_namespaced_deployment,
        ),
        "Job": KindCalls(api.batch.create_namespaced_job),
        "Service": KindCalls(api.core.create_namespaced_service),
        "NetworkPolicy": KindCalls(api.networking.create_namespaced_network_policy),
        **{kind: _custom_calls(api, group) for kind, group in CUSTOM_KINDS.items()},
    }


#: Kinds of other projects' CRDs the operator writes (serving_router inferencePool):
#: group, version and plural. Their spec is merge-patched when it changes.
CUSTOM_KINDS: dict[str, tuple[str, str, str]] = {
    "InferencePool": ("inference.networking.k8s.io", "v1", "inferencepools"),
    "InferenceModelRewrite": ("llm-d.ai", "v1alpha2", "inferencemodelrewrites"),
}


def _custom_calls(api: Any, where: tuple[str, str, str]) -> KindCalls:
    group, version, plural = where

    def create(namespace: str, body: dict[str, Any]) -> Any:
        return api.custom.create_namespaced_custom_object(group, version, namespace, plural, body)

    def patch(name: str, namespace: str, body: dict[str, Any], **kwargs: Any) -> Any:
        return api.custom.patch_namespaced_custom_object(
            group, version, namespace, plural, name, body, **kwargs
        )

    return KindCalls(create, patch=patch)


class Ensure:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.calls = kind_calls(api)

    def apply(
        self,
        desired: dict[str, Any],
        *,
        current: dict[str, Any] | None = None,
        update: bool = True,
    ) -> Outcome:
        """Bring `desired` about in its namespace. `current` is the copy this pass listed
        (ConfigMaps), so an unchanged one costs no call; `update=False` creates only."""
        kind, meta = desired["kind"], desired["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        calls = self.calls[kind]
        if kind in REPLACED:
            return self._replace(calls, desired, update)
        if current is None and _create(calls, desired):
            return "created"
        if not update or kind in CREATED_ONLY:
            return "unchanged"
        patch = _merge_patch(desired)
        if current is not None and all(current.get(k) == v for k, v in patch.items()):
            return "unchanged"
        assert calls.patch is not None
        calls.patch(name, namespace, _with_annotations(desired, patch), **MERGE_PATCH)
        return "updated"

    def _replace(self, calls: KindCalls, desired: dict[str, Any], update: bool) -> Outcome:
        """Create, or replace whole when a field we set differs (its spec hash among
        them); fields the server adds are not ours and are ignored."""
        assert calls.read is not None and calls.replace is not None
        meta = desired["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            current = calls.read(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            # Created meanwhile (409): the next pass compares.
            return "created" if _create(calls, desired) else "unchanged"
        current_dict = self.api.apps.api_client.sanitize_for_serialization(current)
        if not update or not differs(desired, current_dict):
            return "unchanged"
        version = current_dict["metadata"]["resourceVersion"]
        replacement = {**desired, "metadata": {**meta, "resourceVersion": version}}
        calls.replace(name, namespace, replacement)
        return "updated"


def _create(calls: KindCalls, desired: dict[str, Any]) -> bool:
    """Create; False when it already exists (409), which is what we wanted too."""
    try:
        calls.create(desired["metadata"]["namespace"], desired)
    except ApiException as exc:
        if exc.status != 409:
            raise
        return False
    METRICS.children_created.labels(kind=desired["kind"]).inc()
    return True


def _merge_patch(desired: dict[str, Any]) -> dict[str, Any]:
    """What an update sends: a ConfigMap's or Secret's data maps (the listed copy has
    `data`), a custom object's spec."""
    return {k: desired[k] for k in ("data", "stringData", "spec") if k in desired}


def _with_annotations(desired: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    annotations = desired["metadata"].get("annotations")
    return {**patch, "metadata": {"annotations": annotations}} if annotations else patch


def differs(desired: Any, current: Any) -> bool:
    """True when a field we set differs (fields the server adds are ignored)."""
    if isinstance(desired, dict):
        if not isinstance(current, dict):
            return True
        return any(differs(v, current.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(current, list) or len(desired) != len(current):
            return True
        return any(differs(d, c) for d, c in zip(desired, current, strict=True))
    if isinstance(desired, str) and isinstance(current, int | float):
        return desired != str(current)
    return desired != current
