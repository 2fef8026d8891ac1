"""`mtd status`: a deployment's conditions and task table, as `mtd run` prints them, read
from a local workspace (`status.json` and the resource `mtd run` ran) or from the
cluster (the MultiTaskDeployment's own status, through the Kubernetes API)."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtd_contract.exits import EXIT_INVALID

from .api.spec import API_GROUP, API_VERSION, PLURAL, MultiTaskDeployment
from .api.status import MultiTaskDeploymentStatus
from .local.report import task_table

STATUS_FILE = "status.json"
RESOURCE_FILE = "resource.json"


class StatusNotFound(LookupError):
    """No deployment of that name (or none, or several to choose from); says which."""


@dataclass(frozen=True)
class Seen:
    name: str
    where: str
    status: MultiTaskDeploymentStatus
    resource: MultiTaskDeployment | None


def render(seen: Seen) -> str:
    """The conditions, then the task table, as `mtd run` prints them."""
    lines = [f"{seen.name} ({seen.where})"]
    for condition in seen.status.conditions:
        lines.append(
            f"  [{condition.type}={condition.status}] {condition.reason}: {condition.message}"
        )
    if seen.status.serving is not None and seen.status.serving.endpoint:
        lines.append(f"  serving at {seen.status.serving.endpoint}")
    spec = seen.resource.spec if seen.resource is not None else None
    if seen.status.tasks or seen.status.compositions:
        lines.append(task_table(seen.status, spec))
    return "\n".join(lines)


def _one(names: list[str], where: str, flag: str) -> str:
    if not names:
        raise StatusNotFound(f"{where}: no MultiTaskDeployment found")
    if len(names) > 1:
        raise StatusNotFound(f"{where} holds several ({', '.join(names)}); name one {flag}")
    return names[0]


def local_status(workspace: Path, name: str | None) -> Seen:
    """From `workspace/NAME/status.json` (NAME: the only deployment when not given)."""
    if name is None:
        found = sorted(p.parent.name for p in workspace.glob(f"*/{STATUS_FILE}"))
        name = _one(found, str(workspace), "as NAME")
    root = workspace / name
    try:
        status = MultiTaskDeploymentStatus.model_validate_json(
            (root / STATUS_FILE).read_text(encoding="utf-8")
        )
    except FileNotFoundError:
        raise StatusNotFound(f"{root / STATUS_FILE}: no such file; run `mtd run` first") from None
    except ValueError as exc:
        raise StatusNotFound(f"{root / STATUS_FILE}: not a status ({exc})") from None
    resource = None
    # An older workspace has no resource file: the table's KIND column then shows "?".
    with contextlib.suppress(OSError, ValueError):
        resource = MultiTaskDeployment.model_validate_json(
            (root / RESOURCE_FILE).read_text(encoding="utf-8")
        )
    return Seen(name, str(root), status, resource)


def cluster_status(api: Any, namespace: str, name: str | None) -> Seen:
    """From the cluster: `api` is a kubernetes CustomObjectsApi."""
    from kubernetes.client.exceptions import ApiException

    try:
        if name is None:
            listed = api.list_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL)
            names = sorted(item["metadata"]["name"] for item in listed.get("items", []))
            name = _one(names, f"namespace {namespace}", "as NAME")
        body = api.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        if exc.status == 404:
            raise StatusNotFound(
                f"multitaskdeployment {name!r} not found in namespace {namespace}"
            ) from None
        raise
    status = MultiTaskDeploymentStatus.model_validate(body.get("status") or {})
    meta = body.get("metadata") or {}
    try:
        resource = MultiTaskDeployment.model_validate(
            {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                "spec": body.get("spec"),
            }
        )
    except ValueError:
        resource = None  # a resource the operator refuses: its status says why
    return Seen(name, f"namespace {namespace}", status, resource)


def status_command(workspace: Path, name: str | None, kube: bool, namespace: str | None) -> int:
    """`mtd status`: print what `local_status` (or, with `kube`, `cluster_status` through
    the kubeconfig) sees; EXIT_INVALID when there is no such deployment."""
    try:
        if kube:
            from kubernetes import client, config

            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
            api = client.CustomObjectsApi()
            seen = cluster_status(api, namespace or _kube_namespace(), name)
        else:
            seen = local_status(workspace, name)
    except StatusNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(render(seen))
    return 0


def _kube_namespace() -> str:
    """The current context's namespace, as kubectl picks it (default: `default`)."""
    from kubernetes import config

    try:
        _, context = config.list_kube_config_contexts()
    except (config.ConfigException, OSError):
        return "default"
    return (context or {}).get("context", {}).get("namespace") or "default"


def resource_json(resource: MultiTaskDeployment) -> str:
    """What `mtd run` keeps beside status.json for `mtd status` (the resource it ran)."""
    return json.dumps(resource.model_dump(mode="json", by_alias=True, exclude_none=True))
