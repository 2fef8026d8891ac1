"""The stateful core: objects, resource versions, the event log, GC and CRD registration.

kmock's own emulator merges dicts and stops there; kopf, kubectl and client-go need the
server-managed parts of the object model (uid, monotonic resourceVersion, generation,
finalizers and deletionTimestamp, the status subresource, owner-based garbage collection,
schema validation of custom resources) and a replayable event log for watch resumption.
Objects live in kmock's ``ObjectsArray`` (so tests keep kmock's pattern assertions and the
per-object history); everything else is added here.

All public methods are synchronous and thread-safe (one re-entrant lock), so the HTTP
handlers on the server's event loop and the kubelet-like helpers on their own threads can
share one store without an extra hop through HTTP.
"""

from __future__ import annotations

import bisect
import copy
import datetime
import random
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import kmock

from . import schema as schemas
from . import validation
from .errors import ApiError
from .patching import apply_patch, check_patch_type
from .resources import BUILTIN_RESOURCES, NO_GENERATION_KINDS, ResourceDef, resources_from_crd
from .selectors import Predicate

ObjKey = tuple[kmock.resource, str | None, str]

_GENERATE_CHARS = "bcdfghjklmnpqrstvwxz2456789"
CRD_RESOURCE = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAMESPACES = kmock.resource("", "v1", "namespaces")


def now_rfc3339() -> str:
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """One change, as the log keeps it for watchers (``old`` lets selector watches
    translate a change of labels into ADDED/DELETED for that watcher, like the server)."""

    rv: int
    type: str
    storage: kmock.resource
    namespace: str | None
    obj: dict[str, Any]
    old: dict[str, Any] | None = None


class Store:
    """The in-memory database behind the emulator (see the module docstring)."""

    def __init__(self, *, history_limit: int = 20000, strict_namespaces: bool = True) -> None:
        self.lock = threading.RLock()
        self.objects: kmock.ObjectsArray = kmock.ObjectsArray()
        self.history_limit = history_limit
        self.strict_namespaces = strict_namespaces
        self._resources: dict[tuple[str, str, str], ResourceDef] = {}
        self._by_storage: dict[kmock.resource, ResourceDef] = {}
        self._uids: dict[str, ObjKey] = {}
        self._rv = 0
        self._compacted = 0
        self._log: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []
        self.wake: Callable[[], None] = lambda: None
        for res in BUILTIN_RESOURCES:
            self.register(res)
        for ns in ("default", "kube-system", "kube-public"):
            self.create(self.resource("", "v1", "namespaces"), None, {"metadata": {"name": ns}})

    # ------------------------------------------------------------------ resources

    def register(self, res: ResourceDef) -> None:
        with self.lock:
            self._resources[res.key] = res
            if res.version == (res.storage_version or res.version):
                self._by_storage[res.storage] = res

    def unregister_crd(self, crd_name: str) -> None:
        with self.lock:
            for key, res in list(self._resources.items()):
                if res.crd_name == crd_name:
                    del self._resources[key]
                    self._by_storage.pop(res.storage, None)

    def resources(self) -> list[ResourceDef]:
        with self.lock:
            return list(self._resources.values())

    def find_resource(self, group: str, version: str, plural: str) -> ResourceDef | None:
        with self.lock:
            return self._resources.get((group, version, plural))

    def resource(self, group: str, version: str, plural: str) -> ResourceDef:
        res = self.find_resource(group, version, plural)
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return res

    def resource_for(self, api_version: str, kind: str) -> ResourceDef | None:
        group, _, version = api_version.rpartition("/")
        with self.lock:
            for res in self._resources.values():
                if res.group == group and res.version == version and res.kind == kind:
                    return res
        return None

    # ------------------------------------------------------------------ versions & events

    @property
    def resource_version(self) -> int:
        with self.lock:
            return self._rv

    @property
    def compacted_version(self) -> int:
        with self.lock:
            return self._compacted

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def expire(self) -> None:
        """Make every resourceVersion issued so far "too old" (the next watch gets 410)."""
        with self.lock:
            self._rv += 1
            self._compacted = self._rv
            self._log.clear()

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback`` (under the store lock: keep it quick) on every change."""
        with self.lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self.lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _emit(self, type_: str, storage: kmock.resource, obj: dict[str, Any],
              old: dict[str, Any] | None = None) -> None:
        event = Event(int(obj["metadata"]["resourceVersion"]), type_, storage,
                      obj["metadata"].get("namespace"), copy.deepcopy(obj), old)
        self._log.append(event)
        if len(self._log) > self.history_limit:
            drop = len(self._log) // 2
            self._compacted = self._log[drop - 1].rv
            del self._log[:drop]
        for callback in list(self._subscribers):
            callback(event)
        self.wake()

    def events_after(self, rv: int) -> list[Event]:
        """Events newer than ``rv``; raise 410 when ``rv`` is older than the retained log."""
        with self.lock:
            if rv < self._compacted:
                raise ApiError.gone(
                    f"too old resource version: {rv} ({self._compacted})"
                )
            idx = bisect.bisect_right(self._log, rv, key=lambda e: e.rv)
            return self._log[idx:]

    # ------------------------------------------------------------------ reading

    def _key(self, res: ResourceDef, namespace: str | None, name: str) -> ObjKey:
        return (res.storage, namespace if res.namespaced else None, name)

    def _current(self, key: ObjKey) -> dict[str, Any] | None:
        if key in self.objects:
            obj = self.objects[key]
            if not obj.deleted:
                return obj.raw
        return None

    @staticmethod
    def _present(res: ResourceDef, obj: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(obj))
        out["apiVersion"] = res.api_version
        out["kind"] = res.kind
        return out

    def get(self, res: ResourceDef, namespace: str | None, name: str) -> dict[str, Any]:
        with self.lock:
            obj = self._current(self._key(res, namespace, name))
            if obj is None:
                raise ApiError.not_found(res.group, res.plural, name)
            return self._present(res, obj)

    def try_get(self, res: ResourceDef, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self.get(res, namespace, name)
        except ApiError:
            return None

    def list(
        self,
        res: ResourceDef,
        namespace: str | None = None,
        *,
        labels: Predicate | None = None,
        fields: Predicate | None = None,
    ) -> tuple[list[dict[str, Any]], str]:
        """Matching objects sorted by namespace/name, and the list's resourceVersion."""
        with self.lock:
            items: list[dict[str, Any]] = []
            for (storage, ns, _name), obj in self.objects.items():
                if storage != res.storage or obj.deleted:
                    continue
                if res.namespaced and namespace and ns != namespace:
                    continue
                raw = obj.raw
                if labels and not labels(raw.get("metadata", {}).get("labels") or {}):
                    continue
                if fields and not fields(raw):
                    continue
                items.append(self._present(res, raw))
            items.sort(key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))
            return items, str(self._rv)

    def by_uid(self, uid: str) -> dict[str, Any] | None:
        with self.lock:
            key = self._uids.get(uid)
            return None if key is None else copy.deepcopy(self._current(key))

    # ------------------------------------------------------------------ writing

    def _check_namespace(self, res: ResourceDef, namespace: str | None) -> None:
        if not res.namespaced or not self.strict_namespaces:
            return
        ns = self._current((NAMESPACES, None, namespace or ""))
        if ns is None:
            raise ApiError.not_found("", "namespaces", namespace or "")
        if ns.get("metadata", {}).get("deletionTimestamp"):
            raise ApiError(
                403, "Forbidden",
                f'unable to create new content in namespace {namespace} because it is being '
                f"terminated",
            )

    def _prepare_custom(self, res: ResourceDef, obj: dict[str, Any], name: str,
                        field_validation: str = "") -> dict[str, Any]:
        """Prune, default and validate a custom resource against its CRD schema.

        With ``fieldValidation=Strict`` (kubectl's default) unknown fields are an error
        instead of being dropped silently, as on a real server.
        """
        if not res.schema:
            return obj
        pruned = schemas.prune(obj, res.schema, root=True)
        if field_validation == "Strict":
            unknown = schemas.unknown_fields(obj, pruned)
            if unknown:
                raise ApiError.bad_request(
                    f'{res.kind} in version "{res.version}" cannot be handled as a '
                    f"{res.kind}: strict decoding error: "
                    + ", ".join(f'unknown field "{u}"' for u in unknown))
        obj = pruned
        obj = schemas.apply_defaults(obj, res.schema)
        causes = schemas.validate(obj, res.schema)
        if causes:
            raise ApiError.invalid(res.kind, res.group, name, causes)
        return obj

    def _validate_crd(self, obj: Mapping[str, Any]) -> None:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        name = obj.get("metadata", {}).get("name", "")
        causes: list[dict[str, str]] = []
        for required in ("group", "names", "scope", "versions"):
            if not spec.get(required):
                causes.append({"reason": "FieldValueRequired", "message": "Required value",
                               "field": f"spec.{required}"})
        if names and not (names.get("plural") and names.get("kind")):
            causes.append({"reason": "FieldValueRequired", "message": "Required value",
                           "field": "spec.names.plural"})
        if spec.get("group") and names.get("plural") and (
                name != f"{names['plural']}.{spec['group']}"):
            causes.append({
                "reason": "FieldValueInvalid",
                "message": f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
                "field": "metadata.name",
            })
        if causes:
            raise ApiError.invalid("CustomResourceDefinition", "apiextensions.k8s.io", name,
                                   causes)

    @staticmethod
    def _builtin_defaults(res: ResourceDef, obj: dict[str, Any]) -> None:
        if res.has_status and not res.is_custom:
            # A built-in kind's status is a Go struct: the API server always sends it, as {}
            # when empty (a new Job reads `status: {}`, never a missing status).
            obj.setdefault("status", {})
        spec = obj.setdefault("spec", {}) if res.kind in ("Job", "Deployment") else None
        if res.kind == "Namespace":
            obj.setdefault("status", {}).setdefault("phase", "Active")
        elif res.kind == "Job" and spec is not None:
            spec.setdefault("backoffLimit", 6)
            spec.setdefault("completions", 1)
            spec.setdefault("parallelism", 1)
        elif res.kind == "Deployment" and spec is not None:
            spec.setdefault("replicas", 1)
            spec.setdefault("revisionHistoryLimit", 10)
            spec.setdefault("progressDeadlineSeconds", 600)
        elif res.kind == "Pod":
            obj.setdefault("status", {}).setdefault("phase", "Pending")

    def create(
        self,
        res: ResourceDef,
        namespace: str | None,
        body: Mapping[str, Any],
        *,
        dry_run: bool = False,
        keep_status: bool = False,
        field_validation: str = "",
    ) -> dict[str, Any]:
        """POST: 201 semantics (the caller picks the code); 409 on a live duplicate name."""
        if not isinstance(body, Mapping):
            raise ApiError.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise ApiError.bad_request("metadata must be an object")
        with self.lock:
            if res.namespaced:
                body_ns = meta.get("namespace")
                if namespace and body_ns and body_ns != namespace:
                    raise ApiError.bad_request(
                        "the namespace of the provided object does not match the namespace "
                        "sent on the request")
                namespace = namespace or body_ns or "default"
                meta["namespace"] = namespace
            else:
                meta.pop("namespace", None)
                namespace = None
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise ApiError.invalid(res.kind, res.group, "", [{
                        "reason": "FieldValueRequired", "field": "metadata.name",
                        "message": "Required value: name or generateName is required"}])
                for _attempt in range(20):
                    candidate = meta["generateName"] + "".join(
                        random.choices(_GENERATE_CHARS, k=5))
                    if self._current(self._key(res, namespace, candidate)) is None:
                        break
                meta["name"] = candidate
            name = meta["name"]
            # The API server's strategy.Validate (name rule per kind, labels, annotations,
            # kind-specific rules): see validation.py.
            validation.validate_object(res, obj, creating=True)
            self._check_namespace(res, namespace)
            key = self._key(res, namespace, name)
            if self._current(key) is not None:
                raise ApiError.already_exists(res.group, res.plural, name)
            if res.has_status and not keep_status:
                obj.pop("status", None)
            if res.is_custom:
                obj = self._prepare_custom(res, obj, name, field_validation)
                meta = obj["metadata"]
            if res.kind == "CustomResourceDefinition":
                self._validate_crd(obj)
            self._builtin_defaults(res, obj)
            for server_field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(server_field, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = now_rfc3339()
            if res.kind not in NO_GENERATION_KINDS:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            storage_version = res.storage_version or res.version
            obj["apiVersion"] = f"{res.group}/{storage_version}" if res.group \
                else storage_version
            obj["kind"] = res.kind
            if res.kind == "CustomResourceDefinition":
                obj["status"] = self._crd_status(obj)
            if dry_run:
                meta["resourceVersion"] = str(self._rv)
                return self._present(res, obj)
            meta["resourceVersion"] = self._next_rv()
            if key in self.objects:
                self.objects[key].create(obj)
            else:
                self.objects[key] = obj
            self._uids[meta["uid"]] = key
            self._emit("ADDED", res.storage, obj)
            if res.kind == "CustomResourceDefinition":
                for served in resources_from_crd(obj):
                    self.register(served)
            return self._present(res, obj)

    @staticmethod
    def _crd_status(crd: Mapping[str, Any]) -> dict[str, Any]:
        spec = crd.get("spec", {})
        ts = now_rfc3339()
        return {
            "acceptedNames": dict(spec.get("names", {})),
            "storedVersions": [v["name"] for v in spec.get("versions", []) if v.get("storage")],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": ts},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": ts},
            ],
        }

    def update(
        self,
        res: ResourceDef,
        namespace: str | None,
        name: str,
        body: Mapping[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "",
    ) -> dict[str, Any]:
        """PUT: full replacement with optimistic concurrency on metadata.resourceVersion."""
        if not isinstance(body, Mapping):
            raise ApiError.bad_request("the request body must be a JSON object")
        with self.lock:
            key = self._key(res, namespace, name)
            old = self._current(key)
            if old is None:
                raise ApiError.not_found(res.group, res.plural, name)
            new = copy.deepcopy(dict(body))
            rv = (new.get("metadata") or {}).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise ApiError.conflict(
                    res.group, res.plural, name,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again")
            body_name = (new.get("metadata") or {}).get("name")
            if body_name and body_name != name:
                raise ApiError.bad_request("the name of the object does not match the URL")
            return self._commit(res, key, old, new, subresource=subresource, dry_run=dry_run,
                                field_validation=field_validation)

    def patch(
        self,
        res: ResourceDef,
        namespace: str | None,
        name: str,
        patch: Any,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str = "",
    ) -> dict[str, Any]:
        """PATCH (merge, strategic, JSON patch) with the same commit rules as PUT."""
        check_patch_type(content_type, custom=res.is_custom)  # 415 comes before 404
        with self.lock:
            key = self._key(res, namespace, name)
            old = self._current(key)
            if old is None:
                raise ApiError.not_found(res.group, res.plural, name)
            base = self._present(res, old)
            new = apply_patch(base, patch, content_type, custom=res.is_custom)
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "the patch produced a non-object")
            wanted_rv = (patch.get("metadata") or {}).get("resourceVersion") \
                if isinstance(patch, dict) else None
            if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
                raise ApiError.conflict(
                    res.group, res.plural, name,
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again")
            return self._commit(res, key, old, new, subresource=subresource, dry_run=dry_run,
                                field_validation=field_validation)

    def _commit(
        self,
        res: ResourceDef,
        key: ObjKey,
        old: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None,
        dry_run: bool,
        field_validation: str = "",
    ) -> dict[str, Any]:
        if subresource not in (None, "status"):
            raise ApiError(405, "MethodNotAllowed", f"subresource {subresource} is not writable")
        if subresource == "status" and not res.has_status:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if subresource == "status":
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        else:
            raw_meta = new.get("metadata")
            new_meta: dict[str, Any] = dict(raw_meta) if isinstance(raw_meta, dict) else {}
            merged = copy.deepcopy(new)
            merged["metadata"] = new_meta
            if res.has_status:
                if "status" in old:
                    merged["status"] = copy.deepcopy(old["status"])
                else:
                    merged.pop("status", None)
            new = merged
        meta = new["metadata"]
        old_meta = old["metadata"]
        for fixed in ("name", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                      "deletionGracePeriodSeconds", "resourceVersion", "generateName"):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        if res.namespaced:
            meta["namespace"] = old_meta.get("namespace")
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                raise ApiError(422, "Forbidden",
                               "no new finalizers can be added if the object is being deleted")
        new["apiVersion"] = old["apiVersion"]
        new["kind"] = old["kind"]
        if res.is_custom:
            new = self._prepare_custom(res, new, key[2], field_validation)
            meta = new["metadata"]
        if res.kind == "CustomResourceDefinition":
            self._validate_crd(new)
        # strategy.ValidateUpdate: the same rules as on create, less the (immutable) name.
        validation.validate_object(res, new, creating=False)
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)

        def spec_part(o: Mapping[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in o.items() if k not in ("metadata", "status", "apiVersion",
                                                             "kind")}

        if "generation" in old_meta and spec_part(old) != spec_part(new):
            meta["generation"] = int(old_meta["generation"]) + 1
        if new == old:
            return self._present(res, old)  # a no-op write does not bump resourceVersion
        if dry_run:
            return self._present(res, new)
        meta["resourceVersion"] = self._next_rv()
        self.objects[key].history.append(new)
        self._emit("MODIFIED", res.storage, new, old)
        if res.kind == "CustomResourceDefinition":
            self.unregister_crd(key[2])
            for served in resources_from_crd(new):
                self.register(served)
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self._remove(res, key, "Background")
        return self._present(res, new)

    def delete(
        self,
        res: ResourceDef,
        namespace: str | None,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """DELETE: finalizers defer removal (deletionTimestamp); removal triggers GC."""
        options = options or {}
        with self.lock:
            key = self._key(res, namespace, name)
            old = self._current(key)
            if old is None:
                raise ApiError.not_found(res.group, res.plural, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
                raise ApiError.conflict(res.group, res.plural, name, "Precondition failed: UID")
            if pre.get("resourceVersion") and (
                    pre["resourceVersion"] != old["metadata"]["resourceVersion"]):
                raise ApiError.conflict(res.group, res.plural, name,
                                        "Precondition failed: ResourceVersion")
            policy = options.get("propagationPolicy")
            if policy is None and options.get("orphanDependents") is not None:
                policy = "Orphan" if options["orphanDependents"] else "Background"
            if policy is None:
                # batch/v1 Jobs orphan their pods by default through the raw API.
                policy = "Orphan" if res.kind == "Job" else "Background"
            if dry_run:
                return self._present(res, old)
            finalizers = list(old["metadata"].get("finalizers") or [])
            if policy == "Foreground" and finalizers and "foregroundDeletion" not in finalizers:
                pass  # foreground with other finalizers: treated as background below
            if res.kind == "Namespace" and not old["metadata"].get("deletionTimestamp"):
                return self._delete_namespace(res, key, old)
            if finalizers:
                if old["metadata"].get("deletionTimestamp"):
                    return self._present(res, old)
                new = copy.deepcopy(old)
                new["metadata"]["deletionTimestamp"] = now_rfc3339()
                new["metadata"]["deletionGracePeriodSeconds"] = 0
                new["metadata"]["resourceVersion"] = self._next_rv()
                self.objects[key].history.append(new)
                self._emit("MODIFIED", res.storage, new, old)
                return self._present(res, new)
            return self._remove(res, key, policy)

    def _delete_namespace(self, res: ResourceDef, key: ObjKey,
                          old: dict[str, Any]) -> dict[str, Any]:
        new = copy.deepcopy(old)
        new["metadata"]["deletionTimestamp"] = now_rfc3339()
        new.setdefault("status", {})["phase"] = "Terminating"
        new["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key].history.append(new)
        self._emit("MODIFIED", res.storage, new, old)
        namespace = key[2]
        for (storage, ns, name), obj in list(self.objects.items()):
            if ns == namespace and not obj.deleted:
                child_res = self._by_storage.get(storage)
                if child_res is not None:
                    self.delete(child_res, ns, name, {"propagationPolicy": "Background"})
        self._maybe_finish_namespace(namespace)
        return self._present(res, self._current(key) or new)

    def _maybe_finish_namespace(self, namespace: str | None) -> None:
        if namespace is None:
            return
        ns_key: ObjKey = (NAMESPACES, None, namespace)
        ns_obj = self._current(ns_key)
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        if any(ns == namespace and not o.deleted for (_s, ns, _n), o in self.objects.items()):
            return
        self._remove(self._by_storage[NAMESPACES], ns_key, "Background")

    def _remove(self, res: ResourceDef, key: ObjKey, policy: str) -> dict[str, Any]:
        old = self._current(key)
        assert old is not None
        final = copy.deepcopy(old)
        final["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[key].history.append(final)
        self.objects[key].delete()
        uid = final["metadata"]["uid"]
        self._uids.pop(uid, None)
        self._emit("DELETED", res.storage, final)
        self._collect_garbage(uid, policy)
        if res.kind == "CustomResourceDefinition":
            self._drop_crd_objects(final)
        if res.namespaced:
            self._maybe_finish_namespace(key[1])
        return self._present(res, final)

    def _drop_crd_objects(self, crd: Mapping[str, Any]) -> None:
        served = resources_from_crd(crd)
        self.unregister_crd(crd["metadata"]["name"])
        storages = {r.storage: r for r in served}
        for (storage, ns, name), obj in list(self.objects.items()):
            if storage in storages and not obj.deleted:
                self._remove(storages[storage], (storage, ns, name), "Background")

    def _collect_garbage(self, owner_uid: str, policy: str) -> None:
        """Delete (or orphan) the dependents whose ownerReferences point at ``owner_uid``."""
        dependents: list[tuple[ObjKey, dict[str, Any]]] = []
        for key, obj in list(self.objects.items()):
            if obj.deleted:
                continue
            raw = obj.raw
            refs = raw.get("metadata", {}).get("ownerReferences") or []
            if any(ref.get("uid") == owner_uid for ref in refs):
                dependents.append((key, raw))
        for key, raw in dependents:
            res = self._by_storage.get(key[0])
            if res is None:
                continue
            refs = raw["metadata"].get("ownerReferences") or []
            remaining = [r for r in refs if r.get("uid") != owner_uid]
            alive = [r for r in remaining if r.get("uid") in self._uids]
            if policy == "Orphan" or alive:
                self.patch(res, key[1], key[2],
                           [{"op": "replace", "path": "/metadata/ownerReferences",
                             "value": remaining}],
                           "application/json-patch+json")
            elif self._current(key) is not None:
                self.delete(res, key[1], key[2], {"propagationPolicy": "Background"})

    # ------------------------------------------------------------------ helpers for tests

    def snapshot(self) -> dict[ObjKey, dict[str, Any]]:
        """A deep copy of all live objects, keyed like kmock's ObjectsArray."""
        with self.lock:
            return {k: copy.deepcopy(o.raw) for k, o in self.objects.items() if not o.deleted}

    def resources_by_kind(self, kind: str) -> Iterable[ResourceDef]:
        with self.lock:
            return [r for r in self._resources.values() if r.kind == kind]
