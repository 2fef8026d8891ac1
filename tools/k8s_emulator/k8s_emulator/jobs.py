"""``JobRunner``: plays kubelet (and the Job controller) for batch/v1 Jobs in the emulator.

There is no kubelet here, yet the operator's pipeline is a chain of Jobs whose results
drive the next step. The runner executes each Job's first container command as a local
subprocess (the real trainer on a tiny model, in the end-to-end tests), mirrors it as a
Pod with container states, and writes the Job status the way the Job controller does,
including retries up to ``backoffLimit``. It also lets tests pause or fail chosen Jobs.

Path mapping: container paths (volume mountPaths, workingDir, terminationMessagePath) do
not exist locally. ``path_map`` maps container path prefixes to local directories; any
other volumeMount gets ``<volume_root>/<volume name>``, shared by all Jobs that mount the
same volume name (so a workspace PVC is one directory). Mapped prefixes are rewritten in
the command, args, env values and workingDir. The termination log is a per-attempt local
file; its path is also given to the process as ``$TERMINATION_MESSAGE_PATH``.

Image-faithful mode (``image_bin``, the bin folder of a virtualenv built by
``tools/image-venv.sh``): the command is looked up on that PATH only (a command the image
lacks fails to start, as kubelet reports it), the process gets the pod's env and nothing
of the test process's, and runs in an empty working directory. A Job's
``podFailurePolicy`` is applied to exit codes (``FailJob``, ``Ignore``, ``Count``).

Pods that never run, as a cluster shows them: with ``require_service_accounts`` a pod whose
``serviceAccountName`` (other than ``default``) does not exist is not created, and the Job
gets the Job controller's ``FailedCreate`` Warning Event with the ServiceAccount admission
plugin's message, until the account appears; ``hold_pods`` keeps matching Jobs' pods
Pending (ImagePullBackOff, CreateContainerConfigError, Unschedulable, ...) until
``release_pods``.
"""

from __future__ import annotations

import contextlib
import copy
import os
import pathlib
import queue
import random
import re
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import psutil

from .emulator import Emulator
from .errors import ApiError
from .store import Event, now_rfc3339

_MESSAGE_LIMIT = 4096


def uuid_hex() -> str:
    """An Event name's suffix, as client-go's recorder makes one (unique per event)."""
    return uuid.uuid4().hex[:16]


def _kill_pod(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL a pod's every process, as the kubelet does to a container's cgroup: its
    process group and every descendant (torchrun starts its workers in new sessions)."""
    children: list[psutil.Process] = []
    with contextlib.suppress(psutil.Error):
        children = psutil.Process(process.pid).children(recursive=True)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()


@dataclass
class _Injected:
    """A scripted failure for the next ``times`` attempts of matching Jobs."""

    pattern: re.Pattern[str]
    exit_code: int
    reason: str
    message: str
    times: int


@dataclass
class _JobState:
    namespace: str
    name: str
    uid: str
    failed: int = 0
    process: subprocess.Popen[bytes] | None = None
    cancelled: bool = False
    thread: threading.Thread | None = None
    pods: list[str] = field(default_factory=list)
    indexed: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)  # index → pod
    index_pods: dict[int, str] = field(default_factory=dict)  # index → its newest pod's name
    ended: bool = False  # an Indexed Job that failed: its other pods stop


class JobRunner:
    """Watches Jobs in an ``Emulator`` and runs them locally (see the module docstring)."""

    def __init__(
        self,
        emulator: Emulator,
        *,
        path_map: Mapping[str, str] | None = None,
        volume_root: str | None = None,
        backoff_seconds: float = 0.1,
        max_parallel: int = 4,
        python: str = sys.executable,
        extra_env: Mapping[str, str] | None = None,
        timeout: float | None = 600.0,
        gate: Callable[[str, str], AbstractContextManager[Any]] | None = None,
        image_bin: str | None = None,
        require_service_accounts: bool = False,
    ) -> None:
        self.emulator = emulator
        self.require_service_accounts = require_service_accounts
        self._held: dict[str, tuple[re.Pattern[str], str, str | None]] = {}
        self.store = emulator.store
        self.path_map = dict(path_map or {})
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.volume_root = volume_root
        self.backoff_seconds = backoff_seconds
        self.python = python
        self.extra_env = dict(extra_env or {})
        self.timeout = timeout
        # Run commands as the image would: from this bin folder (a virtualenv built by
        # tools/image-venv.sh), with only the pod's env, in a fresh working directory.
        self.image_bin = image_bin
        # A Turnstile (turnstile.py), or any gate(kind, "ns/name") returning a context
        # manager: every Job status write happens inside it, so a test can order them.
        self._gate = gate or (lambda kind, key: contextlib.nullcontext())
        self._slots = threading.Semaphore(max_parallel)
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._jobs: dict[str, _JobState] = {}
        self._lock = threading.Lock()
        self._paused: list[re.Pattern[str]] = []
        self._resumed = threading.Condition(self._lock)
        self._injected: list[_Injected] = []
        self._unsubscribe: Any = None
        self._thread: threading.Thread | None = None
        self.started: list[str] = []  # "ns/name" of every attempt started, in order

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> JobRunner:
        if self.volume_root is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="jobrunner-")
            self.volume_root = self._tmp.name
        self._unsubscribe = self.store.subscribe(self._on_event)
        self._thread = threading.Thread(target=self._loop, name="job-runner", daemon=True)
        self._thread.start()
        jobs = self.emulator.resource("batch/v1/jobs")
        for job in self.store.list(jobs)[0]:  # Jobs created before the runner started
            self._queue.put(Event(0, "ADDED", jobs.storage, job["metadata"].get("namespace"),
                                  job))
        return self

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._queue.put(None)
        with self._lock:
            states = list(self._jobs.values())
            self._paused.clear()
            self._resumed.notify_all()
        for state in states:
            self._cancel(state)
        if self._thread is not None:
            self._thread.join(timeout=10)
        for state in states:
            if state.thread is not None:
                state.thread.join(timeout=10)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> JobRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---------------------------------------------------------------- fault hooks

    def pause(self, name_pattern: str = ".*") -> None:
        """Hold matching Jobs (``namespace/name`` regex) before their next attempt starts."""
        with self._lock:
            self._paused.append(re.compile(name_pattern))

    def resume(self, name_pattern: str | None = None) -> None:
        with self._lock:
            if name_pattern is None:
                self._paused.clear()
            else:
                self._paused = [p for p in self._paused if p.pattern != name_pattern]
            self._resumed.notify_all()

    def fail_next(self, name_pattern: str = ".*", *, exit_code: int = 1, reason: str = "Error",
                  message: str = "injected failure", times: int = 1) -> None:
        """Make the next ``times`` attempts of matching Jobs fail without running them.

        ``reason="OOMKilled"`` (with exit code 137) imitates the kernel's OOM killer.
        """
        with self._lock:
            self._injected.append(_Injected(re.compile(name_pattern), exit_code, reason,
                                            message, times))

    def hold_pods(self, name_pattern: str = ".*", reason: str = "ImagePullBackOff",
                  message: str | None = None) -> None:
        """Pods of matching Jobs (``namespace/name`` regex) stay Pending as a cluster shows
        a pod that cannot start, until ``release_pods``: ``Unschedulable`` as the
        scheduler's PodScheduled=False condition, any other reason as kubelet's waiting
        container state (``ErrImagePull``/``ImagePullBackOff``: an image it cannot pull;
        ``CreateContainerConfigError``: a missing Secret or ConfigMap key)."""
        with self._lock:
            self._held[name_pattern] = (re.compile(name_pattern), reason, message)

    def release_pods(self, name_pattern: str | None = None) -> None:
        with self._lock:
            if name_pattern is None:
                self._held.clear()
            else:
                self._held.pop(name_pattern, None)

    def _hold(self, key: str) -> tuple[str, str | None] | None:
        with self._lock:
            return next((
                (reason, message) for pattern, reason, message in self._held.values()
                if pattern.search(key)), None)

    def _pending_status(self, reason: str, message: str | None,
                        container: Mapping[str, Any]) -> dict[str, Any]:
        """The status a held pod shows (messages as the scheduler and kubelet write them)."""
        name, image = container.get("name", "main"), container.get("image", "")
        if reason == "Unschedulable":
            return {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "lastTransitionTime": now_rfc3339(),
                "message": message or "0/1 nodes are available: 1 Insufficient nvidia.com/gpu. "
                "preemption: 0/1 nodes are available: 1 No preemption victims found for "
                "incoming pod."}]}
        default = {"ImagePullBackOff": f'Back-off pulling image "{image}"',
                   "ErrImagePull": f'failed to pull and unpack image "{image}"'}
        return {"phase": "Pending", "containerStatuses": [{
            "name": name, "image": image, "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "state": {"waiting": {
                "reason": reason, "message": message or default.get(reason, reason)}}}]}

    def _wait_for_account(self, state: _JobState, pod_spec: Mapping[str, Any],
                          pod_name: str) -> bool:
        """Hold the attempt while its ServiceAccount is missing, as the Job controller
        does when pod creation is refused; False if the Job went away meanwhile.

        plugin/pkg/admission/serviceaccount/admission.go refuses the pod ("error looking
        up service account ns/name: serviceaccount "name" not found", Forbidden), and
        pkg/controller/job (via controller_utils.go CreatePods) records the Warning Event
        ``FailedCreate`` "Error creating: <error>" on the Job. ``default`` always exists
        (the ServiceAccount controller creates it in every namespace)."""
        account = pod_spec.get("serviceAccountName") or "default"
        if not self.require_service_accounts or account == "default":
            return True
        accounts = self.emulator.resource("v1/serviceaccounts")
        recorded = False
        while not self._stopped(state):
            with contextlib.suppress(ApiError):
                self.store.get(accounts, state.namespace, account)
                return True
            if not recorded:
                recorded = True
                self._record_failed_create(state, (
                    f'Error creating: pods "{pod_name}" is forbidden: error looking up service '
                    f"account {state.namespace}/{account}: serviceaccount \"{account}\" not "
                    "found"))
            time.sleep(0.1)
        return False

    def _record_failed_create(self, state: _JobState, message: str) -> None:
        now = now_rfc3339()
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{state.name}.{uuid_hex()}", "namespace": state.namespace},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "name": state.name,
                               "namespace": state.namespace, "uid": state.uid},
            "reason": "FailedCreate", "message": message, "type": "Warning",
            "source": {"component": "job-controller"}, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
        }
        with contextlib.suppress(ApiError):
            self.store.create(self.emulator.resource("v1/events"), state.namespace, event)

    def kill(self, namespace: str, name: str) -> None:
        """Kill the running attempt of a Job with SIGKILL (as a node loss would)."""
        with self._lock:
            state = next((s for s in self._jobs.values()
                          if (s.namespace, s.name) == (namespace, name)), None)
        if state is not None:
            for process in [state.process, *state.indexed.values()]:
                if process is not None:
                    _kill_pod(process)

    def kill_pod(self, namespace: str, name: str, index: int) -> None:
        """Kill one pod (by completion index) of an Indexed Job's running attempt."""
        with self._lock:
            state = next((s for s in self._jobs.values()
                          if (s.namespace, s.name) == (namespace, name)), None)
        process = state.indexed.get(index) if state is not None else None
        if process is not None:
            _kill_pod(process)

    # ---------------------------------------------------------------- event handling

    def _on_event(self, event: Event) -> None:
        if event.storage.group == "batch" and event.storage.plural == "jobs":
            self._queue.put(event)

    def _loop(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            meta = event.obj.get("metadata", {})
            uid = meta.get("uid", "")
            if event.type == "DELETED":
                with self._lock:
                    state = self._jobs.pop(uid, None)
                if state is not None:
                    self._cancel(state)
                continue
            status = event.obj.get("status") or {}
            done = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                       for c in status.get("conditions") or [])
            if done or meta.get("deletionTimestamp") or event.obj.get("spec", {}).get("suspend"):
                continue
            with self._lock:
                if uid in self._jobs:
                    continue
                state = _JobState(meta.get("namespace", "default"), meta["name"], uid)
                self._jobs[uid] = state
            state.thread = threading.Thread(target=self._run_job, args=(state, event.obj),
                                            name=f"job-{state.name}", daemon=True)
            state.thread.start()

    def _cancel(self, state: _JobState) -> None:
        state.cancelled = True
        for process in [state.process, *state.indexed.values()]:
            if process is not None:
                _kill_pod(process)

    # ---------------------------------------------------------------- running a Job

    def _write_job_status(self, state: _JobState, status: Mapping[str, Any]) -> bool:
        try:
            self.emulator.patch("batch/v1/jobs", state.name, {"status": status},
                                namespace=state.namespace, subresource="status")
            return True
        except ApiError:
            return False  # the Job is gone

    def _run_job(self, state: _JobState, job: Mapping[str, Any]) -> None:
        spec = job.get("spec") or {}
        if spec.get("completionMode") == "Indexed":
            self._run_indexed(state, job)
            return
        backoff_limit = int(spec.get("backoffLimit", 6))
        start_time = now_rfc3339()
        while not state.cancelled:
            self._wait_unpaused(state)
            if not self._gated_write(state, "job-start", {"active": 1, "startTime": start_time,
                                                          "ready": 0}):
                return
            with self._slots:
                exit_code, reason, message = self._attempt(state, job)
            if state.cancelled:
                return
            if exit_code == 0:
                self._write_complete(state, 1)
                return
            rule = _matching_rule(spec.get("podFailurePolicy"), exit_code, job)
            if rule is not None and rule[1] == "Ignore":
                continue  # not counted against backoffLimit
            state.failed += 1
            if rule is not None and rule[1] == "FailJob":
                self._write_failed_by_policy(state, job, state.pods[-1], exit_code, rule[0])
                return
            if state.failed > backoff_limit:
                self._write_backoff_exceeded(state, exit_code, reason, message)
                return
            if not self._gated_write(state, "job-retry", {"active": 0, "failed": state.failed}):
                return
            time.sleep(self.backoff_seconds * (2 ** (state.failed - 1)))

    def _run_indexed(self, state: _JobState, job: Mapping[str, Any]) -> None:
        """An Indexed Job as pkg/controller/job/indexed_job_utils.go runs one: a pod per
        completion index, all at once; a failed pod is replaced for its index alone (the
        others keep running) after a backoff, each failure counted against backoffLimit;
        the Job fails when they exceed it, or on a FailJob rule, and its remaining pods are
        deleted (killed here); it completes when every index has succeeded.

        Pods get ``JOB_COMPLETION_INDEX``. There is no cluster DNS here: pod 0's stable
        name ``<job>-0.<subdomain>[.<ns>[.svc[.cluster.local]]]:<port>`` in the command
        becomes ``127.0.0.1:<a free port>``, the same for the Job's whole life, so a
        replaced pod 0 listens where the others look for it.
        """
        spec = job.get("spec") or {}
        backoff_limit = int(spec.get("backoffLimit", 6))
        completions = int(spec.get("completions") or 1)
        policy = spec.get("podFailurePolicy")
        rewrites = self._rendezvous_rewrites(state, job)
        lock = threading.Lock()
        succeeded: set[int] = set()
        ending: list[tuple[int, str, str, str, tuple[int, str] | None]] = []
        self._wait_unpaused(state)
        if not self._gated_write(state, "job-start", {"active": completions,
                                                      "startTime": now_rfc3339(), "ready": 0}):
            return

        def run(index: int) -> None:
            while not self._stopped(state):
                exit_code, reason, message = self._attempt(state, job, index=index,
                                                           rewrites=rewrites)
                pod = state.index_pods.get(index, "")
                state.indexed.pop(index, None)
                if self._stopped(state):
                    return
                if exit_code == 0:
                    with lock:
                        succeeded.add(index)
                    return
                rule = _matching_rule(policy, exit_code, job)
                if rule is not None and rule[1] == "Ignore":
                    continue
                with lock:
                    state.failed += 1
                    failed, active = state.failed, completions - len(succeeded)
                    if (rule is not None and rule[1] == "FailJob") or failed > backoff_limit:
                        ending.append((exit_code, reason, message, pod, rule))
                        state.ended = True
                if state.ended:
                    for process in list(state.indexed.values()):  # the controller deletes them
                        _kill_pod(process)
                    return
                self._gated_write(state, "job-retry", {"active": active, "failed": failed})
                time.sleep(self.backoff_seconds * (2 ** (failed - 1)))
                self._wait_unpaused(state)

        with self._slots:
            threads = [threading.Thread(target=run, args=(i,), daemon=True,
                                        name=f"job-{state.name}-{i}")
                       for i in range(completions)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        state.indexed.clear()
        if state.cancelled:
            return
        if ending:
            exit_code, reason, message, pod, rule = ending[0]
            if rule is not None and rule[1] == "FailJob":
                self._write_failed_by_policy(state, job, pod, exit_code, rule[0])
            else:
                self._write_backoff_exceeded(state, exit_code, reason, message)
        elif len(succeeded) == completions:
            self._write_complete(state, completions)

    def _wait_unpaused(self, state: _JobState) -> None:
        key = f"{state.namespace}/{state.name}"
        with self._lock:
            while any(p.search(key) for p in self._paused) and not state.cancelled:
                self._resumed.wait(timeout=0.2)

    @staticmethod
    def _stopped(state: _JobState) -> bool:
        """The Job was deleted, or has ended: no pod of it starts or waits any more."""
        return state.cancelled or state.ended

    def _write_complete(self, state: _JobState, pods: int) -> None:
        now = now_rfc3339()
        self._gated_write(state, "job-end", {
            "active": None, "ready": 0, "succeeded": pods, "completionTime": now,
            "conditions": [
                {"type": "SuccessCriteriaMet", "status": "True",
                 "reason": "CompletionsReached", "message": "Reached expected number "
                 "of succeeded pods", "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                 "message": "Reached expected number of succeeded pods",
                 "lastProbeTime": now, "lastTransitionTime": now},
            ],
        })

    def _write_failed_by_policy(self, state: _JobState, job: Mapping[str, Any], pod: str,
                                exit_code: int, rule_index: int) -> None:
        now = now_rfc3339()
        message = (f"Container {_container_name(job)} for pod {state.namespace}/{pod} failed "
                   f"with exit code {exit_code} matching FailJob rule at index {rule_index}")
        self._gated_write(state, "job-end", {
            "active": None, "ready": 0, "failed": state.failed,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy",
                 "message": message, "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
                 "message": message, "lastProbeTime": now, "lastTransitionTime": now},
            ],
        })

    def _write_backoff_exceeded(self, state: _JobState, exit_code: int, reason: str,
                                message: str) -> None:
        now = now_rfc3339()
        detail = f"{reason}: {message}".strip() if message else reason
        self._gated_write(state, "job-end", {
            "active": None, "ready": 0, "failed": state.failed,
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit",
                 "lastProbeTime": now, "lastTransitionTime": now},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit "
                            f"(last pod: exit code {exit_code}, {detail})"[:1024],
                 "lastProbeTime": now, "lastTransitionTime": now},
            ],
        })

    def _gated_write(self, state: _JobState, kind: str, status: Mapping[str, Any]) -> bool:
        """Write the Job status once the gate lets it through; False if the Job is gone."""
        with self._gate(kind, f"{state.namespace}/{state.name}"):
            return not state.cancelled and self._write_job_status(state, status)

    def _take_injected(self, key: str) -> _Injected | None:
        with self._lock:
            for inj in self._injected:
                if inj.times > 0 and inj.pattern.search(key):
                    inj.times -= 1
                    return inj
        return None

    def _map(self, text: str, mapping: Mapping[str, str]) -> str:
        for src in sorted(mapping, key=len, reverse=True):
            if text == src or text.startswith(src.rstrip("/") + "/"):
                return mapping[src] + text[len(src):]
        return text

    def _map_all(self, text: str, mapping: Mapping[str, str]) -> str:
        """Rewrite mapped prefixes anywhere in an argument (``--config=/workspace/x``).

        One pass over all prefixes (longest first), so a rewritten path is never
        rewritten again by a shorter prefix such as ``/tmp``.
        """
        if not mapping:
            return text
        sources = {src.rstrip("/") or "/": dst.rstrip("/") for src, dst in mapping.items()}
        pattern = "|".join(re.escape(src) for src in sorted(sources, key=len, reverse=True))
        return re.sub(rf"(?<![\w/])({pattern})(?=/|$|[^\w])",
                      lambda match: sources[match.group(1)], text)

    def _rendezvous_rewrites(self, state: _JobState,
                             job: Mapping[str, Any]) -> list[tuple[re.Pattern[str], str]]:
        """Pod 0's DNS name in a pod's command → ``127.0.0.1:<port>``, one port per Job."""
        subdomain = ((job.get("spec") or {}).get("template", {}).get("spec") or {}).get(
            "subdomain")
        if not subdomain:
            return []
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        host = rf"{re.escape(state.name)}-0\.{re.escape(subdomain)}(\.[a-z0-9.-]+)?:\d+"
        return [(re.compile(host), f"127.0.0.1:{port}")]

    def _attempt(self, state: _JobState, job: Mapping[str, Any], index: int | None = None,
                 rewrites: list[tuple[re.Pattern[str], str]] | None = None,
                 ) -> tuple[int, str, str]:
        """Run one pod attempt; return (exit code, reason, message)."""
        pod_spec = copy.deepcopy((job.get("spec") or {}).get("template", {}).get("spec") or {})
        containers = pod_spec.get("containers") or [{}]
        container = copy.deepcopy(containers[0])
        if index is not None:  # what the Job controller adds to an Indexed Job's pods
            container.setdefault("env", []).append(
                {"name": "JOB_COMPLETION_INDEX", "value": str(index)})
        for pattern, replacement in rewrites or []:
            for part in ("command", "args"):
                container[part] = [pattern.sub(replacement, str(c))
                                   for c in container.get(part) or []]
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        pod_name = f"{state.name}-{suffix}" if index is None else f"{state.name}-{index}-{suffix}"
        state.pods.append(pod_name)
        if index is not None:
            state.index_pods[index] = pod_name
        key = f"{state.namespace}/{state.name}"
        self.started.append(key)
        assert self.volume_root is not None
        attempt_dir = pathlib.Path(self.volume_root) / ".attempts" / f"{state.namespace}-{pod_name}"
        attempt_dir.mkdir(parents=True, exist_ok=True)
        mapping = dict(self.path_map)
        volumes = {v.get("name"): v for v in pod_spec.get("volumes") or []}
        for mount in container.get("volumeMounts") or []:
            path = mount.get("mountPath")
            vol = volumes.get(mount.get("name"), {})
            if path and path not in mapping and "configMap" in vol:
                mapping[path] = str(self._materialise_config_map(state, vol, attempt_dir))
                continue
            if path and path not in mapping:
                claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
                local = pathlib.Path(self.volume_root) / (claim or mount.get("name", "vol"))
                if mount.get("subPath"):
                    local = local / mount["subPath"]
                local.mkdir(parents=True, exist_ok=True)
                mapping[path] = str(local)
        term_path = container.get("terminationMessagePath") or "/dev/termination-log"
        local_term = attempt_dir / "termination-log"
        mapping[term_path] = str(local_term)

        labels = {"job-name": state.name, "batch.kubernetes.io/job-name": state.name,
                  "controller-uid": state.uid, "batch.kubernetes.io/controller-uid": state.uid}
        if index is not None:
            labels["batch.kubernetes.io/job-completion-index"] = str(index)
        labels.update(((job.get("spec") or {}).get("template", {}).get("metadata") or {})
                      .get("labels") or {})
        pod = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": pod_name, "namespace": state.namespace, "labels": labels,
                "ownerReferences": [{
                    "apiVersion": "batch/v1", "kind": "Job", "name": state.name,
                    "uid": state.uid, "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": pod_spec,
        }
        pods = self.emulator.resource("v1/pods")
        if not self._wait_for_account(state, pod_spec, pod_name):
            return (1, "Error", "the Job was deleted before its pod could be created")
        try:
            self.store.create(pods, state.namespace, pod)
        except ApiError:
            return (1, "Error", "could not create the pod")
        started_at = now_rfc3339()
        cname = container.get("name", "main")

        def pod_status(phase: str, cstate: Mapping[str, Any], ready: bool = False) -> None:
            with contextlib.suppress(ApiError):
                self.store.patch(pods, state.namespace, pod_name, {"status": {
                    "phase": phase, "startTime": started_at,
                    "containerStatuses": [{
                        "name": cname, "image": container.get("image", ""), "ready": ready,
                        "imageID": "", "containerID": f"emulator://{pod_name}",
                        "restartCount": 0, "started": phase == "Running", "state": cstate}],
                }}, "application/merge-patch+json", subresource="status")

        shown = False
        while (hold := self._hold(key)) is not None and not self._stopped(state):
            if not shown:
                with contextlib.suppress(ApiError):
                    self.store.patch(pods, state.namespace, pod_name,
                                     {"status": self._pending_status(*hold, container)},
                                     "application/merge-patch+json", subresource="status")
                shown = True
            time.sleep(0.1)
        if self._stopped(state):
            return (1, "Error", "the Job ended while its pod was Pending")
        injected = self._take_injected(key)
        if injected is not None:
            result = (injected.exit_code, injected.reason, injected.message)
            logs = injected.message + "\n"
        else:
            pod_status("Running", {"running": {"startedAt": started_at}}, ready=True)
            result, logs = self._execute(state, container, mapping, local_term, pod_name, index)
        exit_code, reason, message = result
        self.emulator.handler.pod_logs[(state.namespace, pod_name)] = logs
        pod_status("Succeeded" if exit_code == 0 else "Failed", {"terminated": {
            "exitCode": exit_code, "reason": reason, "message": message,
            "startedAt": started_at, "finishedAt": now_rfc3339()}})
        return result

    def _materialise_config_map(self, state: _JobState, volume: Mapping[str, Any],
                                attempt_dir: pathlib.Path) -> pathlib.Path:
        """Write a configMap volume's keys as files, as kubelet does (per pod: no sharing)."""
        local = attempt_dir / "configmaps" / str(volume.get("name", "config"))
        local.mkdir(parents=True, exist_ok=True)
        name = volume["configMap"].get("name", "")
        try:
            config_maps = self.emulator.resource("v1/configmaps")
            config_map = self.store.get(config_maps, state.namespace, name)
        except ApiError:
            return local  # kubelet would wait; the command then fails on the missing file
        for key, value in (config_map.get("data") or {}).items():
            (local / key).write_text(str(value), encoding="utf-8")
        return local

    def _execute(self, state: _JobState, container: Mapping[str, Any],
                 mapping: Mapping[str, str], local_term: pathlib.Path,
                 pod_name: str, index: int | None = None) -> tuple[tuple[int, str, str], str]:
        command = [self._map_all(str(c), mapping) for c in
                   list(container.get("command") or []) + list(container.get("args") or [])]
        if not command:
            return (1, "Error", "the container has no command"), ""
        if self.image_bin is None:
            if command[0] in ("python", "python3"):
                command[0] = self.python
            env = dict(os.environ)
            env.update(self.extra_env)
        else:  # the image: its PATH, the pod's env and nothing of this process's
            path = f"{self.image_bin}:/usr/local/bin:/usr/bin:/bin"
            env = {**self.extra_env, "PATH": path, "HOME": str(local_term.parent / "home")}
            found = shutil.which(command[0], path=path) if "/" not in command[0] else command[0]
            if found is None:
                message = f'exec: "{command[0]}": executable file not found in $PATH'
                return (128, "StartError", message), message
            command[0] = found
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = self._map_all(str(item["value"]), mapping)
        env["TERMINATION_MESSAGE_PATH"] = str(local_term)
        env["HOSTNAME"] = pod_name
        workdir = container.get("workingDir")
        cwd = self._map(workdir, mapping) if workdir else None
        if cwd is None and self.image_bin is not None:
            cwd = str(local_term.parent / "workdir")  # the image's WORKDIR, empty
        if cwd:
            pathlib.Path(cwd).mkdir(parents=True, exist_ok=True)
        try:
            # Its own process group, like a pod's container: a kill ends its children too.
            process = subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            return (128, "ContainerCannotRun", str(exc)), str(exc)
        if index is None:
            state.process = process
        else:
            state.indexed[index] = process
        try:
            out, err = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_pod(process)
            out, err = process.communicate()
            err += b"\n[job runner] timed out\n"
        code = process.returncode
        if index is None:
            state.process = None
        logs = out.decode(errors="replace") + err.decode(errors="replace")
        if code < 0:  # killed by a signal: SIGKILL is how the kernel's OOM killer ends it
            exit_code = 128 - code
            reason = "OOMKilled" if -code == signal.SIGKILL else "Error"
        else:
            exit_code = code
            reason = "Completed" if code == 0 else "Error"
        message = ""
        if local_term.exists():
            message = local_term.read_text(errors="replace")[:_MESSAGE_LIMIT]
        policy = container.get("terminationMessagePolicy", "File")
        if not message and exit_code != 0 and policy == "FallbackToLogsOnError":
            message = "\n".join(logs.splitlines()[-80:])[-2048:]
        if not message and exit_code != 0:
            message = err.decode(errors="replace")[-1024:].strip()
        return (exit_code, reason, message), logs


def _container_name(job: Mapping[str, Any]) -> str:
    containers = ((job.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers")
    return (containers or [{}])[0].get("name", "main")


def _matching_rule(policy: Mapping[str, Any] | None, exit_code: int,
                   job: Mapping[str, Any]) -> tuple[int, str] | None:
    """(index, action) of the first podFailurePolicy rule matching a failed pod, as the Job
    controller applies it (onExitCodes only: the emulator has no disruption conditions)."""
    for index, rule in enumerate((policy or {}).get("rules") or []):
        codes = rule.get("onExitCodes")
        if not codes:
            continue
        if codes.get("containerName") not in (None, _container_name(job)):
            continue
        inside = exit_code in (codes.get("values") or [])
        if inside == (codes.get("operator") == "In"):
            return index, rule["action"]
    return None
