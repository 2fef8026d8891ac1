"""The HTTP face of the emulator: a kmock handler that speaks the Kubernetes REST API.

Built on ``kmock.KubernetesScaffold`` (kmock 0.8, pinned): kmock provides the aiohttp
server, request recording (``emulator.handler`` is a kmock view for assertions such as
``len(emu.handler['post'])``), the reaction DSL (a test can still override any path with
``emu.handler['get /x'] << 500``), the Status rendering of unexpected errors and the
``/`` and ``/version`` endpoints. What kmock 0.8 cannot carry is replaced here:

* request parsing: kmock's path parser crashes on ``/api/v1/namespaces`` and reads
  ``/api/v1/namespaces/x`` as a namespace without a resource, so ``__call__`` builds the
  ``kmock.Request`` itself from our own parser;
* the object semantics and watch streams (kmock replays everything as ADDED, sends no JSON
  content type, and has no resourceVersions): see ``store.py``;
* discovery: kmock's lists lack verbs and scopes, which kopf and kubectl rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from .errors import ApiError
from .faults import FaultBook
from .resources import ResourceDef
from .selectors import parse_field_selector, parse_label_selector
from .store import Event, Store
from .tables import render_table

MAX_REQUEST_BODY_BYTES = 3 * 1024 * 1024

_TABLE_RE = re.compile(r"as=Table")


@attrs.frozen
class ApiPath:
    """A parsed API path; ``plural`` is None for discovery documents."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_api_path(path: str) -> ApiPath | None:
    """Parse /api/v1/... and /apis/g/v/...; None for anything else (and for /api, /apis)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return ApiPath(group, version)
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = "/".join(rest[2:]) or None
    if plural == "namespaces" and name is not None:
        namespace = name if namespace is None else namespace
    return ApiPath(group, version, plural, namespace, name, sub)


def _json(data: Any, status: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.Response(
        body=json.dumps(data).encode(), status=status, content_type="application/json")


def _error(exc: ApiError, headers: Mapping[str, str] | None = None) -> aiohttp.web.Response:
    resp = _json(exc.status(), exc.code)
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


class _StreamCut(Exception):
    """Raised inside a watch stream to close it on purpose (fault injection)."""


@attrs.define(kw_only=True)
class ApiHandler(kmock.KubernetesScaffold):
    """kmock handler with the Kubernetes semantics described in the package docs."""

    store: Store = attrs.field(factory=Store)
    faults: FaultBook = attrs.field(factory=FaultBook)
    bookmark_interval: float = 5.0
    max_recorded_requests: int = 20000
    pod_logs: dict[tuple[str, str], str] = attrs.field(factory=dict)
    server_address: str = ""
    _changed: asyncio.Future[None] | None = attrs.field(default=None, init=False)
    # Open watch streams: path+query → "drop me" flags, for cutting live streams.
    _streams: dict[int, tuple[str, list[bool]]] = attrs.field(factory=dict, init=False)
    _closing: asyncio.Event | None = attrs.field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = attrs.field(default=None, init=False)

    # -------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> ApiHandler:
        await super().__aenter__()
        self._loop = asyncio.get_running_loop()
        self._changed = self._loop.create_future()
        self._closing = asyncio.Event()
        self.store.wake = self._wake_threadsafe
        return self

    def close_streams(self) -> None:
        """Ask all watch streams to end (called on the loop before the server closes)."""
        if self._closing is not None:
            self._closing.set()
        self._notify()

    def drop_watches(self, pattern: re.Pattern[str]) -> int:
        """Close the currently open watch streams whose path+query matches (any thread)."""
        count = 0
        for path_qs, flag in list(self._streams.values()):
            if pattern.search(path_qs):
                flag[0] = True
                count += 1
        self._wake_threadsafe()
        return count

    def _wake_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._notify)

    def _notify(self) -> None:
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        if self._loop is not None:
            self._changed = self._loop.create_future()

    # -------------------------------------------------------------- request intake

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """Like kmock's RawHandler.__call__, but with a path parser that knows the API."""
        # aiohttp refuses bodies over 1 MiB; the API server takes up to 3 MiB
        # (staging/src/k8s.io/apiserver/pkg/server/config.go MaxRequestBodyBytes), so that
        # object-size rules (a ConfigMap's 1 MiB) answer 422 as on a cluster, not 413.
        raw_request = raw_request.clone(client_max_size=MAX_REQUEST_BODY_BYTES)
        body = await raw_request.read()
        text = body.decode("utf-8", errors="replace")
        try:
            data = json.loads(text) if text else None
        except ValueError:
            data = None
        parsed = parse_api_path(raw_request.path)
        method = raw_request.method.upper()
        query = dict(raw_request.query)
        action: kmock.action | None = None
        resource: kmock.resource | None = None
        if parsed is not None and parsed.plural is not None:
            resource = kmock.resource(parsed.group, parsed.version, parsed.plural)
            if method == "GET" and query.get("watch") in ("true", "1"):
                action = kmock.action.WATCH
            elif parsed.name is None:
                action = {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
            else:
                action = {"GET": kmock.action.FETCH, "PATCH": kmock.action.UPDATE,
                          "PUT": kmock.action.UPDATE, "DELETE": kmock.action.DELETE}.get(method)
        request = rendering.Request(
            id=len(self._requests), raw_request=raw_request, url=raw_request.url,
            method=method, params=query, headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies), data=data, body=body, text=text,
            action=action, resource=resource,
            namespace=parsed.namespace if parsed else None,
            name=parsed.name if parsed else None,
            subresource=parsed.subresource if parsed else None,
        )
        self._requests.append(request)
        if len(self._requests) > self.max_recorded_requests:
            del self._requests[: self.max_recorded_requests // 2]
        try:
            return await self._handle(request)
        except rendering.StreamingError as exc:
            raw_response = exc.args[0]
            if self._errors:
                cause = exc.__cause__
                self._errors[-1].append(cause if isinstance(cause, Exception) else exc)
            return raw_response
        except kmock.KubernetesError as exc:  # e.g. kmock's 404 for unknown endpoints
            return await self._render_error(exc)
        except Exception as exc:
            if not self._errors:
                raise
            self._errors[-1].append(exc)
            return await self._render_error(exc)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None
        method = str(request.method.value if hasattr(request.method, "value") else request.method)
        path_qs = raw.path_qs
        is_watch = request.params.get("watch") in ("true", "1")
        fault = self.faults.take(method, path_qs, is_watch, cut=False)
        if fault is not None:
            code = fault.status or 500
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
            return _error(ApiError.generic(code, fault.message), headers)

        # User-defined kmock reactions (anything above kmock's fallback priority) go first.
        for payload in self._payloads:
            if payload.priorities and payload.priorities[0] == -math.inf:
                continue
            if request in payload._source and not payload._disabled.is_set():
                try:
                    return await payload(request)
                except rendering.ReactionMismatchError:
                    payload._disabled.set()
                except NotImplementedError:
                    pass

        try:
            response = await self._dispatch(request, method, raw.path, is_watch)
        except ApiError as exc:
            return _error(exc)
        if response is not None:
            return response
        return await super()._handle(request)

    # -------------------------------------------------------------- routing

    async def _dispatch(self, request: rendering.Request, method: str, path: str,
                        is_watch: bool) -> aiohttp.web.StreamResponse | None:
        if method == "GET":
            if path in ("/api", "/api/"):
                return _json(self._api_versions())
            if path in ("/apis", "/apis/"):
                return _json(self._api_group_list())
            if path.startswith("/openapi/"):
                return _json(self._openapi(path))
            if path in ("/healthz", "/livez", "/readyz"):
                return aiohttp.web.Response(text="ok")
        parsed = parse_api_path(path)
        if parsed is None:
            if method == "GET" and path.startswith("/apis/") and path.count("/") == 2:
                return _json(self._api_group(path.split("/")[2]))
            return None
        if parsed.plural is None:
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "method not allowed")
            return _json(self._resource_list(parsed.group, parsed.version))
        res = self.store.resource(parsed.group, parsed.version, parsed.plural)
        params = request.params
        dry_run = params.get("dryRun") == "All"
        validation = params.get("fieldValidation", "")
        ns = parsed.namespace if res.namespaced else None
        if res.plural == "namespaces":
            ns = None
        name = parsed.name
        sub = parsed.subresource
        accept = request.headers.get("Accept", "")
        ctype = request.headers.get("Content-Type", "")
        if "protobuf" in ctype or "cbor" in ctype:
            # Only JSON is spoken here: 415 makes client-go fall back to JSON.
            raise ApiError(415, "UnsupportedMediaType",
                           f"the body of the request was in an unknown format - accepted "
                           f"media types include: application/json, application/yaml "
                           f"(got {ctype})")
        wants_table = bool(_TABLE_RE.search(accept))

        if method == "GET" and is_watch:
            return await self._watch(request, res, ns, name, params)
        if method == "GET" and name is None:
            return self._list(res, ns, params, wants_table)
        if method == "GET" and name is not None:
            if sub == "log" and res.kind == "Pod":
                self.store.get(res, ns, name)
                text = self.pod_logs.get((ns or "", name), "")
                return aiohttp.web.Response(text=text, content_type="text/plain")
            obj = self.store.get(res, ns, name)
            if wants_table:
                return _json(render_table(res, [obj], resource_version=str(
                    self.store.resource_version),
                    include_object=params.get("includeObject", "Metadata")))
            return _json(obj)
        if method == "POST" and name is None:
            body = self._body(request)
            obj = self.store.create(res, parsed.namespace, body, dry_run=dry_run,
                                    field_validation=validation)
            return _json(obj, 201)
        if method == "PUT" and name is not None:
            obj = self.store.update(res, ns, name, self._body(request), subresource=sub,
                                    dry_run=dry_run, field_validation=validation)
            return _json(obj)
        if method == "PATCH" and name is not None:
            ctype = request.headers.get("Content-Type", "application/merge-patch+json")
            if ctype.startswith("application/apply-patch"):
                return self._server_side_apply(request, res, ns, name, sub, dry_run)
            obj = self.store.patch(res, ns, name, request.data, ctype, subresource=sub,
                                   dry_run=dry_run, field_validation=validation)
            return _json(obj)
        if method == "DELETE" and name is not None:
            options = request.data if isinstance(request.data, dict) else {}
            if "propagationPolicy" in params:
                options = {**options, "propagationPolicy": params["propagationPolicy"]}
            obj = self.store.delete(res, ns, name, options, dry_run=dry_run)
            return _json(obj)
        if method == "DELETE" and name is None:
            items, _rv = self.store.list(
                res, ns, labels=parse_label_selector(params.get("labelSelector")),
                fields=parse_field_selector(params.get("fieldSelector")))
            deleted = []
            for item in items:
                meta = item["metadata"]
                with contextlib.suppress(ApiError):
                    deleted.append(self.store.delete(res, meta.get("namespace"), meta["name"],
                                                     request.data or {}))
            return _json(self._typed_list(res, deleted, str(self.store.resource_version)))
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {path}")

    @staticmethod
    def _body(request: rendering.Request) -> Any:
        if request.data is None and request.text:
            try:
                return yaml.safe_load(request.text)
            except yaml.YAMLError as exc:
                raise ApiError.bad_request(f"cannot decode the body: {exc}") from exc
        if not isinstance(request.data, dict):
            raise ApiError.bad_request("the request body must be a JSON object")
        return request.data

    def _server_side_apply(self, request: rendering.Request, res: ResourceDef,
                           ns: str | None, name: str, sub: str | None,
                           dry_run: bool) -> aiohttp.web.Response:
        """Server-side apply, approximated as create-or-merge (no field ownership)."""
        body = self._body(request)
        if self.store.try_get(res, ns, name) is None and sub is None:
            body.setdefault("metadata", {}).setdefault("name", name)
            return _json(self.store.create(res, ns, body, dry_run=dry_run), 201)
        return _json(self.store.patch(res, ns, name, body, "application/merge-patch+json",
                                      subresource=sub, dry_run=dry_run))

    # -------------------------------------------------------------- lists & tables

    @staticmethod
    def _typed_list(res: ResourceDef, items: list[dict[str, Any]], rv: str,
                    cont: str | None = None, remaining: int | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": rv}
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": meta, "items": items}

    def _list(self, res: ResourceDef, ns: str | None, params: Mapping[str, str],
              wants_table: bool) -> aiohttp.web.Response:
        items, rv = self.store.list(
            res, ns, labels=parse_label_selector(params.get("labelSelector")),
            fields=parse_field_selector(params.get("fieldSelector")))
        cont: str | None = None
        remaining = 0
        start = 0
        if params.get("continue"):
            try:
                start = int(params["continue"].split(":", 1)[1])
            except (IndexError, ValueError) as exc:
                raise ApiError.bad_request("invalid continue token") from exc
        limit = int(params.get("limit") or 0)
        if start or limit:
            end = start + limit if limit else len(items)
            if end < len(items):
                cont = f"offset:{end}"
                remaining = len(items) - end
            items = items[start:end]
        if wants_table:
            return _json(render_table(res, items, resource_version=rv, continue_token=cont,
                                      include_object=params.get("includeObject", "Metadata")))
        return _json(self._typed_list(res, items, rv, cont, remaining))

    # -------------------------------------------------------------- watch

    async def _watch(self, request: rendering.Request, res: ResourceDef, ns: str | None,
                     name: str | None, params: Mapping[str, str]) -> aiohttp.web.StreamResponse:
        raw = request._raw_request
        assert raw is not None and self._loop is not None and self._closing is not None
        labels = parse_label_selector(params.get("labelSelector"))
        fields = parse_field_selector(params.get("fieldSelector"))

        def matches(obj: Mapping[str, Any]) -> bool:
            meta = obj.get("metadata", {})
            if name is not None and meta.get("name") != name:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        rv_param = params.get("resourceVersion") or None
        send_initial = params.get("sendInitialEvents") == "true"
        bookmarks = params.get("allowWatchBookmarks") == "true"
        timeout = float(params.get("timeoutSeconds") or 0) or None
        cut = self.faults.take("GET", raw.path_qs, True, cut=True)

        cursor: int | None = None
        if rv_param not in (None, "0") and not send_initial:
            try:
                cursor = int(rv_param or "")
            except ValueError as exc:
                raise ApiError.bad_request(f"invalid resourceVersion {rv_param!r}") from exc
            if cursor > self.store.resource_version:
                raise ApiError(504, "Timeout", "Too large resource version")

        response = aiohttp.web.StreamResponse(status=200)
        response.content_type = "application/json"
        response.headers["Cache-Control"] = "no-cache, private"
        await response.prepare(raw)
        sent = 0

        async def send(event: Mapping[str, Any]) -> None:
            nonlocal sent
            if cut is not None and cut.cut_after is not None and sent >= cut.cut_after:
                raise _StreamCut()
            await response.write(json.dumps(event).encode() + b"\n")
            sent += 1

        def present(obj: Mapping[str, Any]) -> dict[str, Any]:
            out = dict(obj)
            out["apiVersion"] = res.api_version
            return out

        dropped = [False]
        self._streams[id(dropped)] = (raw.path_qs, dropped)
        try:
            if cursor is None:
                items, list_rv = self.store.list(res, ns)
                cursor = int(list_rv)
                for obj in items:
                    if matches(obj):
                        await send({"type": "ADDED", "object": obj})
                if send_initial:
                    await send(self._bookmark(res, cursor, initial_end=True))
            if cut is not None and cut.cut_after == 0:
                raise _StreamCut()
            deadline = self._loop.time() + timeout if timeout else None
            while not self._closing.is_set() and not dropped[0]:
                waiter = self._changed
                assert waiter is not None
                try:
                    events = self.store.events_after(cursor)
                except ApiError as exc:
                    await send({"type": "ERROR", "object": exc.status()})
                    break
                for event in events:
                    cursor = event.rv
                    translated = self._translate(event, res, ns, matches)
                    if translated is not None:
                        await send({"type": translated[0], "object": present(translated[1])})
                wait_for = self.bookmark_interval
                if deadline is not None:
                    left = deadline - self._loop.time()
                    if left <= 0:
                        break
                    wait_for = min(wait_for, left)
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), timeout=wait_for)
                except TimeoutError:
                    if bookmarks and not self._closing.is_set():
                        await send(self._bookmark(res, cursor))
        except (_StreamCut, ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._streams.pop(id(dropped), None)
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await response.write_eof()
        return response

    @staticmethod
    def _translate(event: Event, res: ResourceDef, ns: str | None,
                   matches: Callable[[Mapping[str, Any]], bool]
                   ) -> tuple[str, dict[str, Any]] | None:
        """Map a store event onto one watcher's view (selector enter/leave → ADDED/DELETED)."""
        if event.storage != res.storage:
            return None
        if ns is not None and event.namespace != ns:
            return None
        now = matches(event.obj)
        if event.type == "MODIFIED" and event.old is not None:
            before = matches(event.old)
            if now and before:
                return ("MODIFIED", event.obj)
            if now:
                return ("ADDED", event.obj)
            if before:
                return ("DELETED", event.obj)
            return None
        return (event.type, event.obj) if now else None

    @staticmethod
    def _bookmark(res: ResourceDef, rv: int, initial_end: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK",
                "object": {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}}

    # -------------------------------------------------------------- discovery

    async def _serve_server_version(self, request: rendering.Request) -> dict[str, str]:
        """Overrides kmock's k3s 1.26 answer: a current version keeps kubectl from warning
        about version skew."""
        return {"major": "1", "minor": "35", "gitVersion": "v1.35.0-k8s-emulator",
                "gitCommit": "0" * 40, "gitTreeState": "clean",
                "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64"}

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for res in self.store.resources():
            versions = groups.setdefault(res.group, [])
            if res.version not in versions:
                versions.append(res.version)
        for versions in groups.values():
            versions.sort(key=_version_priority)
        return groups

    def _api_versions(self) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}]}

    def _group_doc(self, group: str, versions: list[str]) -> dict[str, Any]:
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}",
                                 "version": versions[0]},
        }

    def _api_group_list(self) -> dict[str, Any]:
        groups = self._groups()
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group_doc(g, vs) for g, vs in sorted(groups.items()) if g]}

    def _api_group(self, group: str) -> dict[str, Any]:
        versions = self._groups().get(group)
        if not versions or not group:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIGroup", "apiVersion": "v1", **self._group_doc(group, versions)}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = [r for r in self.store.resources()
                     if r.group == group and r.version == version]
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        docs: list[dict[str, Any]] = []
        for res in sorted(resources, key=lambda r: r.plural):
            docs.append({
                "name": res.plural, "singularName": res.singular, "namespaced": res.namespaced,
                "kind": res.kind, "verbs": list(res.verbs), "shortNames": list(res.short_names),
                "categories": list(res.categories),
                "storageVersionHash": "",
            })
            for sub in res.subresources:
                docs.append({
                    "name": f"{res.plural}/{sub}", "singularName": "",
                    "namespaced": res.namespaced,
                    "kind": "Scale" if sub == "scale" else res.kind,
                    "verbs": ["get"] if sub == "log" else ["get", "patch", "update"],
                })
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": docs}

    def _openapi(self, path: str) -> dict[str, Any]:
        """OpenAPI v3, just enough for kubectl to choose server-side field validation.

        kubectl validates by default; it skips its client-side schema check (which needs the
        protobuf OpenAPI v2 document) when the v3 document shows that PATCH for the kind
        accepts the ``fieldValidation`` query parameter. So every resource is listed with
        that parameter and a permissive schema, and the server validates (``Strict``).
        """
        if path.rstrip("/") == "/openapi/v3":
            groups = self._groups()
            paths = {}
            for group, versions in groups.items():
                for version in versions:
                    gv = f"api/{version}" if not group else f"apis/{group}/{version}"
                    paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}"}
            return {"paths": paths}
        if path.startswith("/openapi/v3/"):
            gv_path = path[len("/openapi/v3/"):].strip("/")
            parts = gv_path.split("/")
            if parts[0] == "api" and len(parts) == 2:
                group, version = "", parts[1]
            elif parts[0] == "apis" and len(parts) == 3:
                group, version = parts[1], parts[2]
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested "
                               "resource")
            return self._openapi_doc(group, version)
        raise ApiError(404, "NotFound", "the server could not find the requested resource")

    def _openapi_doc(self, group: str, version: str) -> dict[str, Any]:
        resources = [r for r in self.store.resources()
                     if r.group == group and r.version == version]
        if not resources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        paths: dict[str, Any] = {}
        schemas: dict[str, Any] = {}
        params = [{"name": n, "in": "query", "schema": {"type": "string"}}
                  for n in ("dryRun", "fieldManager", "fieldValidation", "force")]
        for res in resources:
            gvk = {"group": res.group, "version": res.version, "kind": res.kind}
            schema_name = f"{'.'.join(reversed(res.group.split('.'))) or 'io.k8s.api.core'}" \
                          f".{res.version}.{res.kind}"
            schemas[schema_name] = {
                "type": "object", "x-kubernetes-preserve-unknown-fields": True,
                "x-kubernetes-group-version-kind": [gvk],
            }
            ref = {"$ref": f"#/components/schemas/{schema_name}"}
            op = {"x-kubernetes-group-version-kind": gvk, "parameters": params,
                  "responses": {"200": {"description": "OK", "content": {
                      "application/json": {"schema": ref}}}}}
            base = res.url("{namespace}" if res.namespaced else None)
            paths[f"{base}/{{name}}"] = {"get": op, "put": op, "patch": op, "delete": op}
            paths[base] = {"get": op, "post": op}
        return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.31.0"},
                "paths": paths, "components": {"schemas": schemas}}


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes version ordering: GA before beta before alpha, higher numbers first."""
    match = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", version)
    if not match:
        return (3, 0, 0)
    major, stage, minor = match.groups()
    rank = {"": 0, "beta": 1, "alpha": 2}[stage or ""]
    return (rank, -int(major), -int(minor or 0))
