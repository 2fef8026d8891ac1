"""The resource catalogue of the emulator: built-in kinds and CRD-registered kinds.

Discovery, URL routing, typed lists, Table output and schema validation all need to know,
per resource, its kind, scope, subresources and (for custom resources) the schema and the
printer columns. Keeping that in one small immutable record means a CRD registration is a
single dictionary update, and the rest of the emulator never special-cases built-ins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import kmock

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True)
class ResourceDef:
    """Everything the emulator needs to know about one served resource (one version).

    ``storage_version`` differs from ``version`` only for multi-version CRDs: objects are
    stored once, under the storage version, and re-labelled on reads (no conversion
    webhooks are emulated, which is what ``conversion: None`` means on a real server).
    """

    group: str
    version: str
    plural: str
    kind: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    storage_version: str = ""
    # For custom resources only:
    schema: Mapping[str, Any] | None = None
    printer_columns: tuple[Mapping[str, Any], ...] = ()
    crd_name: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def key(self) -> tuple[str, str, str]:
        """The routing key: (group, version, plural)."""
        return (self.group, self.version, self.plural)

    @property
    def storage(self) -> kmock.resource:
        """The kmock resource under which objects are stored (version-independent)."""
        return kmock.resource(self.group, self.storage_version or self.version, self.plural)

    @property
    def is_custom(self) -> bool:
        return self.crd_name is not None

    def url(self, namespace: str | None = None, name: str | None = None) -> str:
        """The API path of a collection or an object (used for selfLinks and messages)."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [base]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
        return "/".join(parts)


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    short: Iterable[str] = (),
    categories: Iterable[str] = (),
    sub: Iterable[str] = (),
    verbs: Iterable[str] = ALL_VERBS,
) -> ResourceDef:
    return ResourceDef(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=tuple(short),
        categories=tuple(categories),
        subresources=tuple(sub),
        verbs=tuple(verbs),
    )


BUILTIN_RESOURCES: tuple[ResourceDef, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short=["ns"],
             sub=["status"], verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    _builtin("", "v1", "pods", "Pod", short=["po"], categories=["all"], sub=["status", "log"]),
    _builtin("", "v1", "services", "Service", short=["svc"], categories=["all"], sub=["status"]),
    _builtin("", "v1", "configmaps", "ConfigMap", short=["cm"]),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"]),
    _builtin("", "v1", "events", "Event", short=["ev"]),
    _builtin("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=["pvc"],
             sub=["status"]),
    _builtin("apps", "v1", "deployments", "Deployment", short=["deploy"], categories=["all"],
             sub=["status", "scale"]),
    _builtin("batch", "v1", "jobs", "Job", categories=["all"], sub=["status"]),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", short=["netpol"]),
    _builtin("apiextensions.k8s.io", "v1", "customresourcedefinitions",
             "CustomResourceDefinition", namespaced=False, short=["crd", "crds"],
             categories=["api-extensions"], sub=["status"]),
)

# Kinds whose objects carry no spec in the real API: they get no metadata.generation.
NO_GENERATION_KINDS = frozenset({"ConfigMap", "Secret", "Event", "ServiceAccount", "Lease",
                                 "Namespace"})


def resources_from_crd(crd: Mapping[str, Any]) -> list[ResourceDef]:
    """Translate a CustomResourceDefinition into the served resource versions.

    Only ``served`` versions are returned; the one marked ``storage`` (or the first) is the
    storage version for all of them.
    """
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    group = spec.get("group", "")
    versions = [v for v in spec.get("versions", []) if v.get("served", True)]
    storage = next(
        (v["name"] for v in spec.get("versions", []) if v.get("storage")),
        versions[0]["name"] if versions else "v1",
    )
    result: list[ResourceDef] = []
    for ver in versions:
        subresources = tuple(sorted((ver.get("subresources") or {}).keys()))
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        result.append(
            ResourceDef(
                group=group,
                version=ver["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                singular=names.get("singular") or names.get("kind", "").lower(),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=subresources,
                storage_version=storage,
                schema=schema,
                printer_columns=tuple(ver.get("additionalPrinterColumns") or ()),
                crd_name=crd.get("metadata", {}).get("name"),
            )
        )
    return result
