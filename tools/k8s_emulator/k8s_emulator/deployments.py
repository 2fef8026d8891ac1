"""``DeploymentController``: marks Deployments rolled out, or holds a revision unready.

The operator waits for its serving Deployment to be Available before it reports Ready,
and a rollout that never becomes ready must leave the old revision serving (issue 9). No
pods run here, so this controller writes the status a real controller would, after a
delay, and lets a test hold chosen revisions unready.
"""

from __future__ import annotations

import contextlib
import copy
import json
import queue
import threading
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from .emulator import Emulator
from .errors import ApiError
from .store import Event, now_rfc3339

REVISION = "deployment.kubernetes.io/revision"


class DeploymentController:
    """Watches Deployments and writes their rollout status (see the module docstring).

    A "revision" is counted per Deployment: 1 for the first pod template, +1 for each
    template change (stored in the ``deployment.kubernetes.io/revision`` annotation of the
    status view, ``status.revision`` not being a real field).
    """

    def __init__(
        self,
        emulator: Emulator,
        *,
        delay: float = 0.2,
        gate: Callable[[str, str], AbstractContextManager[Any]] | None = None,
    ) -> None:
        self.emulator = emulator
        # A Turnstile (turnstile.py): each status write happens inside gate("rollout", ns/name)
        self._gate = gate or (lambda kind, key: contextlib.nullcontext())
        self.store = emulator.store
        self.delay = delay
        self._lock = threading.Lock()
        self._templates: dict[str, list[str]] = {}  # uid → templates seen, in order
        self._ready: dict[str, int] = {}  # uid → ready replicas of the last good revision
        self._holds: list[Callable[[Mapping[str, Any], int], bool]] = []
        self._timers: dict[str, threading.Timer] = {}
        self._unsubscribe: Callable[[], None] | None = None
        # Store callbacks run under the store lock: work is handed to our own thread.
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def start(self) -> DeploymentController:
        self._unsubscribe = self.store.subscribe(self._queue.put)
        self._thread = threading.Thread(target=self._loop, name="deployment-controller",
                                        daemon=True)
        self._thread.start()
        for dep in self.emulator.list("apps/v1/deployments"):
            self._schedule(dep)
        return self

    def _loop(self) -> None:
        while (event := self._queue.get()) is not None:
            self._on_event(event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()

    def __enter__(self) -> DeploymentController:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def hold_unready(self, name: str | None = None, namespace: str | None = None,
                     revision: int | None = None,
                     predicate: Callable[[Mapping[str, Any], int], bool] | None = None) -> None:
        """Keep matching revisions unready: by name/namespace/revision number, or predicate.

        ``revision=None`` holds every revision from the next template change on (the current
        one if nothing was rolled out yet).
        """
        def matches(dep: Mapping[str, Any], rev: int) -> bool:
            meta = dep.get("metadata", {})
            if name is not None and meta.get("name") != name:
                return False
            if namespace is not None and meta.get("namespace") != namespace:
                return False
            if revision is not None and rev != revision:
                return False
            return predicate(dep, rev) if predicate is not None else True

        with self._lock:
            self._holds.append(matches)

    def release(self) -> None:
        """Drop all holds and re-evaluate every Deployment."""
        with self._lock:
            self._holds.clear()
        for dep in self.emulator.list("apps/v1/deployments"):
            self._schedule(dep, force=True)

    def revision(self, dep: Mapping[str, Any]) -> int:
        with self._lock:
            return len(self._templates.get(dep["metadata"]["uid"], [])) or 1

    def _on_event(self, event: Event) -> None:
        if event.storage.group != "apps" or event.storage.plural != "deployments":
            return
        if event.type == "DELETED":
            uid = event.obj["metadata"]["uid"]
            with self._lock:
                timer = self._timers.pop(uid, None)
                self._templates.pop(uid, None)
                self._ready.pop(uid, None)
            if timer is not None:
                timer.cancel()
            return
        self._schedule(event.obj)

    def _schedule(self, dep: Mapping[str, Any], force: bool = False) -> None:
        meta = dep["metadata"]
        status = dep.get("status") or {}
        if not force and status.get("observedGeneration") == meta.get("generation"):
            return
        uid = meta["uid"]
        template = json.dumps((dep.get("spec") or {}).get("template") or {}, sort_keys=True)
        with self._lock:
            seen = self._templates.setdefault(uid, [])
            if not seen or seen[-1] != template:
                seen.append(template)
            old = self._timers.pop(uid, None)
            timer = threading.Timer(self.delay, self._mark, args=(meta.get("namespace"),
                                                                 meta["name"]))
            timer.daemon = True
            self._timers[uid] = timer
        if old is not None:
            old.cancel()
        # Progressing immediately: a new generation is observed, not yet available.
        self._write(dep, ready=False, progressing_reason="ReplicaSetUpdated")
        timer.start()

    def _mark(self, namespace: str, name: str) -> None:
        dep = self.emulator.try_get("apps/v1/deployments", name, namespace)
        if dep is None:
            return
        rev = self.revision(dep)
        with self._lock:
            held = any(hold(dep, rev) for hold in self._holds)
        if held:
            self._write(dep, ready=False, progressing_reason="ProgressDeadlineExceeded")
        else:
            self._write(dep, ready=True, progressing_reason="NewReplicaSetAvailable")

    def _write(self, dep: Mapping[str, Any], *, ready: bool, progressing_reason: str) -> None:
        meta = dep["metadata"]
        with self._gate("rollout", f"{meta.get('namespace')}/{meta['name']}"):
            self._write_status(dep, ready=ready, progressing_reason=progressing_reason)

    def _write_status(self, dep: Mapping[str, Any], *, ready: bool,
                      progressing_reason: str) -> None:
        meta = dep["metadata"]
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        rev = self.revision(dep)
        now = now_rfc3339()
        old_status = copy.deepcopy(dep.get("status") or {})
        with self._lock:
            if ready:
                self._ready[meta["uid"]] = replicas
            old_ready = self._ready.get(meta["uid"], 0)
        available = replicas if ready else old_ready
        conditions = [
            {"type": "Available", "status": "True" if available >= max(replicas, 1) or (
                ready and replicas == 0) else "False",
             "reason": "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             "message": "Deployment has minimum availability." if available else
                        "Deployment does not have minimum availability.",
             "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Progressing",
             "status": "False" if progressing_reason == "ProgressDeadlineExceeded" else "True",
             "reason": progressing_reason,
             "message": f'ReplicaSet "{meta["name"]}-rev{rev}" '
                        + ("has successfully progressed." if ready else
                           "has timed out progressing." if progressing_reason ==
                           "ProgressDeadlineExceeded" else "is progressing."),
             "lastUpdateTime": now, "lastTransitionTime": now},
        ]
        for cond in conditions:  # keep lastTransitionTime unless the status flips
            prev = next((c for c in old_status.get("conditions") or []
                         if c.get("type") == cond["type"]), None)
            if prev and prev.get("status") == cond["status"]:
                cond["lastTransitionTime"] = prev.get("lastTransitionTime", now)
        # Old pods run next to the new ones during a rollout, unless the strategy forbids a
        # surge (maxSurge 0: an old pod stops before its replacement starts).
        rolling = (dep.get("spec") or {}).get("strategy", {}).get("rollingUpdate") or {}
        surge = 0 if ready or not old_ready or rolling.get("maxSurge") in (0, "0", "0%") else (
            old_ready)
        status = {
            "observedGeneration": meta.get("generation"),
            "replicas": replicas + surge,
            "updatedReplicas": replicas if ready else 0,
            "readyReplicas": available,
            "availableReplicas": available,
            "unavailableReplicas": 0 if ready else replicas,
            "conditions": conditions,
        }
        try:
            self.emulator.patch("apps/v1/deployments", meta["name"], {
                "status": status}, namespace=meta.get("namespace"), subresource="status")
            self.emulator.patch("apps/v1/deployments", meta["name"], {
                "metadata": {"annotations": {REVISION: str(rev)}}},
                namespace=meta.get("namespace"))
        except ApiError:
            pass
