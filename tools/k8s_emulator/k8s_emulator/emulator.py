"""``Emulator``: the API server on loopback, in a background thread, for synchronous tests.

kubectl runs as a subprocess, the official client is synchronous, and kopf wants its own
event loop: so the server gets a private thread and loop, and the test thread talks to it
through HTTP (like any client) or through the thread-safe ``store`` (for assertions and for
the kubelet-like helpers, which are not API clients of the code under test).
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import kmock
import yaml

from .errors import ApiError
from .faults import Fault, FaultBook
from .resources import ResourceDef
from .server import ApiHandler
from .store import Store


class _LoopbackServer(kmock.Server):
    """kmock's Server without its DNS interceptor.

    The interceptor patches aiohttp's resolver process-wide and must be exited strictly in
    LIFO order; emulators with overlapping lifetimes (fixtures, threads) would break that,
    and clients here connect to the IP address anyway.
    """

    async def __aenter__(self) -> Self:
        if self._managed_server is not None:
            raise RuntimeError("The server can be started/entered only once.")
        server = self._server_cls(self.handler, host=self._host, port=self._port)
        self._managed_server = server
        await server.__aenter__()
        client = self._client_fct(server.make_url("/"))
        self._managed_client = client
        await client.__aenter__()
        self.handler.servers.append(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        self.handler.servers.remove(self)
        if self._managed_client is not None:
            await self._managed_client.__aexit__(exc_type, exc, tb)
        if self._managed_server is not None:
            await self._managed_server.__aexit__(exc_type, exc, tb)
        self._managed_client = None
        self._managed_server = None


class Emulator:
    """A Kubernetes API server emulator on ``127.0.0.1`` with a free port.

    Use as a context manager (or ``start()``/``stop()``)::

        with Emulator() as emu:
            subprocess.run(["kubectl", "--kubeconfig", emu.kubeconfig_path, "get", "ns"])
            emu.get("v1/namespaces", "default")
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        strict_namespaces: bool = True,
        bookmark_interval: float = 5.0,
        history_limit: int = 20000,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.store = Store(history_limit=history_limit, strict_namespaces=strict_namespaces)
        self.faults = FaultBook()
        self.handler = ApiHandler(store=self.store, faults=self.faults,
                                  bookmark_interval=bookmark_interval)
        self._host = host
        self._port = port
        self._namespaces = namespaces
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._server: kmock.Server | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.kubeconfig_path: str = ""
        self.url: str = ""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        if self._thread is not None:
            raise RuntimeError("the emulator is already started")
        self._thread = threading.Thread(target=self._run, name="k8s-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise RuntimeError("the emulator did not start within 30 seconds")
        if self._failure is not None:
            raise RuntimeError("the emulator failed to start") from self._failure
        self._tmpdir = tempfile.TemporaryDirectory(prefix="k8s-emulator-")
        self.kubeconfig_path = str(pathlib.Path(self._tmpdir.name) / "kubeconfig")
        pathlib.Path(self.kubeconfig_path).write_text(yaml.safe_dump(self.kubeconfig()))
        for ns in self._namespaces:
            self.ensure_namespace(ns)
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() or kept for stop()
            self._failure = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with self.handler, _LoopbackServer(self.handler, host=self._host,
                                                 port=self._port) as server:
            self._server = server
            self.handler.server_address = f"{server.host}:{server.port}"
            self.url = f"http://{server.host}:{server.port}"
            self._ready.set()
            await self._stop.wait()
            self.handler.close_streams()
            await asyncio.sleep(0.05)  # let the watch streams finish their last writes

    def stop(self) -> None:
        if self._thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout=30)
        self._thread = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        if self._failure is not None:
            raise RuntimeError("the emulator's server loop failed") from self._failure

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.port

    def kubeconfig(self, namespace: str = "default") -> dict[str, Any]:
        """A kubeconfig for this server (no credentials: the emulator does no auth)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {
                "cluster": "emulator", "user": "emulator", "namespace": namespace}}],
            "current-context": "emulator",
        }

    # ---------------------------------------------------------------- diagnostics & faults

    @property
    def objects(self) -> kmock.ObjectsArray:
        """kmock's object array (with history): ``emu.objects['v1/pods', 'ns', 'n']``.

        Read it for assertions; write through the API or the helper methods instead.
        """
        return self.store.objects

    @property
    def server_errors(self) -> list[Exception]:
        """Unexpected exceptions inside the server (a healthy test ends with none)."""
        try:
            return list(self.handler.errors)
        except RuntimeError:
            return []

    @property
    def requests(self) -> kmock.RawHandler:
        """kmock's request view: ``len(emu.requests['post'])``, ``emu.requests[-1].data``."""
        return self.handler

    def inject_fault(
        self,
        method: str | None,
        path: str | re.Pattern[str],
        status: int = 500,
        *,
        count: int = 1,
        message: str | None = None,
        retry_after: int | None = None,
        watch: bool | None = None,
    ) -> Fault:
        """Make the next ``count`` requests matching (method, path regex) fail with ``status``.

        ``path`` is searched (``re.search``) in the path with its query string; ``method``
        None matches any method; ``watch`` True/False restricts to (non-)watch requests.
        """
        pattern = re.compile(path) if isinstance(path, str) else path
        return self.faults.add(Fault(method=method, path=pattern, status=status,
                                     message=message, retry_after=retry_after,
                                     remaining=count, watch=watch))

    def cut_watches(self, path: str | re.Pattern[str] = r".*", *, after_events: int = 0,
                    count: int = 1) -> Fault:
        """Close the next ``count`` matching watch streams after ``after_events`` events."""
        pattern = re.compile(path) if isinstance(path, str) else path
        return self.faults.add(Fault(method="GET", path=pattern, remaining=count, watch=True,
                                     cut_after=after_events))

    def drop_watches(self, path: str | re.Pattern[str] = r".*") -> int:
        """Close the watch streams open right now (mid-stream); return how many."""
        pattern = re.compile(path) if isinstance(path, str) else path
        return self.handler.drop_watches(pattern)

    def clear_faults(self) -> None:
        self.faults.clear()

    def expire_resource_versions(self) -> None:
        """Forget the event history: watches resuming from any earlier version get 410."""
        self.store.expire()

    # ---------------------------------------------------------------- object helpers

    def resource(self, ref: str | ResourceDef) -> ResourceDef:
        """Find a served resource by 'group/version/plural', 'v1/plural', plural, or Kind."""
        if isinstance(ref, ResourceDef):
            return ref
        candidates = self.store.resources()
        parts = ref.split("/")
        for res in candidates:
            if len(parts) == 3 and (res.group, res.version, res.plural) == tuple(parts):
                return res
            if len(parts) == 2 and res.group == "" and (res.version, res.plural) == tuple(parts):
                return res
            if len(parts) == 1 and ref in (res.plural, res.kind, res.singular, *res.short_names):
                return res
        raise KeyError(f"no served resource matches {ref!r}")

    def resource_of(self, body: Mapping[str, Any]) -> ResourceDef:
        res = self.store.resource_for(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        if res is None:
            raise KeyError(f"no served resource for {body.get('apiVersion')} {body.get('kind')}")
        return res

    def ensure_namespace(self, name: str) -> None:
        res = self.resource("v1/namespaces")
        if self.store.try_get(res, None, name) is None:
            self.store.create(res, None, {"metadata": {"name": name}})

    def create(self, body: Mapping[str, Any], namespace: str | None = None) -> dict[str, Any]:
        return self.store.create(self.resource_of(body), namespace, body)

    def get(self, ref: str | ResourceDef, name: str,
            namespace: str | None = "default") -> dict[str, Any]:
        return self.store.get(self.resource(ref), namespace, name)

    def try_get(self, ref: str | ResourceDef, name: str,
                namespace: str | None = "default") -> dict[str, Any] | None:
        return self.store.try_get(self.resource(ref), namespace, name)

    def list(self, ref: str | ResourceDef, namespace: str | None = None) -> list[dict[str, Any]]:
        return self.store.list(self.resource(ref), namespace)[0]

    def patch(self, ref: str | ResourceDef, name: str, patch: Any,
              namespace: str | None = "default", *, subresource: str | None = None,
              content_type: str = "application/merge-patch+json") -> dict[str, Any]:
        return self.store.patch(self.resource(ref), namespace, name, patch, content_type,
                                subresource=subresource)

    def delete(self, ref: str | ResourceDef, name: str, namespace: str | None = "default",
               propagation: str | None = None) -> dict[str, Any]:
        options = {"propagationPolicy": propagation} if propagation else {}
        return self.store.delete(self.resource(ref), namespace, name, options)

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0,
                 interval: float = 0.05, message: str = "condition") -> Any:
        """Poll ``predicate`` until it returns a truthy value (returned) or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = predicate()
            except (ApiError, KeyError):
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{message} not reached within {timeout} s")
            time.sleep(interval)
