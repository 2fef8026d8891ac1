"""A whole cluster for the reliability tests: the API emulator with the project's CRD, a
JobRunner (playing kubelet) running a FAKE trainer by default (see fake_mtd.py), a
DeploymentController, and the real operator as a `kopf run` process that a test can
SIGKILL at any API write it makes and start again.

A `stepped` cluster puts the JobRunner and the DeploymentController behind a Turnstile:
`run_stepped()` then lets the world change one write at a time (a Job starting, a Job
ending, a rollout step), and only once the operator has caught up with the previous
change, so a pipeline run writes the same status sequence every time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from k8s_emulator import DeploymentController, Emulator, JobRunner, Turnstile
from tests.support.net import free_port
from tests.support.processes import stop
from tests.support.tiny_tasks import (
    SOUND_SENTIMENT,
    task,
    tiny_resource,
    write_composition_data,
    write_task_data,
)
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml"
VENV_BIN = Path(sys.executable).parent
FAKE_MTD = Path(__file__).with_name("fake_mtd.py")
MTD = "multitask.dev/v1alpha1/multitaskdeployments"
GROUP, VERSION, PLURAL = "multitask.dev", "v1alpha1", "multitaskdeployments"
ROLE = "multitask.dev/role"


# ----------------------------------------------------------------------- data and specs


def write_data(folder: Path) -> None:
    """The three toy tasks' data and the `sound-sentiment` composition's."""
    write_task_data(folder)
    write_composition_data(folder)


COMPOSITIONS = [SOUND_SENTIMENT]


SENTIMENT = task("sentiment", "classification", labels=["pos", "neg"], baseline={"score": 0.5})
SOUNDS = task("sounds", "generation", metric="exactMatch", baseline={"score": 0.5})
AGREE = task("agree", "classification", labels=["yes", "no"], baseline={"train": True})
ALL_TASKS = [SENTIMENT, SOUNDS, AGREE]


def resource(
    name: str,
    namespace: str,
    tasks: list[dict],
    compositions: list[dict] | None = None,
    **training: Any,
) -> dict[str, Any]:
    metadata = {"name": name, "namespace": namespace}
    doc = tiny_resource(tasks, metadata=metadata, compositions=compositions, **training)
    # TGI: its rollouts are what the emulator's Deployment controller plays (no pod serves
    # here, so vLLM's runtime loads could never finish).
    doc["spec"]["serving"] = {"engine": "tgi"}
    return doc


def precomputed_profiles(
    workspace: Path, tasks: list[dict], compositions: list[dict] | None = None
) -> Path:
    """The profiling result (tasks' and compositions' profiles), computed by the real
    profiler once, for the fake `mtd profile` to publish."""
    from mtd_operator.api.spec import MultiTaskDeploymentSpec
    from mtd_operator.data_files import profile_compositions, profile_spec

    spec = MultiTaskDeploymentSpec.model_validate(
        resource("x", "default", tasks, compositions)["spec"]
    )
    profiles, problems = profile_spec(spec, workspace)
    composed, composition_problems = profile_compositions(spec, workspace)
    assert not problems and not composition_problems, problems + composition_problems
    path = workspace / "profiles.json"
    path.write_text(
        json.dumps(
            {
                "profiles": {k: v.to_json() for k, v in profiles.items()},
                "compositions": {k: v.to_json() for k, v in composed.items()},
            }
        )
    )
    return path


def condition(obj: dict | None, type_: str) -> dict[str, Any]:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []):
        if cond["type"] == type_:
            return cond
    return {}


def strip_times(status: dict[str, Any]) -> dict[str, Any]:
    copy = json.loads(json.dumps(status))
    for cond in copy.get("conditions", []):
        cond.pop("lastTransitionTime", None)
    return copy


# ----------------------------------------------------------------------- the cluster


class Cluster:
    """Emulator + CRD + JobRunner + DeploymentController + the operator process.

    `writes` records every API write the operator made, in order (child creates, serving
    Deployment patches, status patches that changed something); `job_adds` counts
    how many times each Job was created. `arm_kill()` makes the next operator write
    SIGKILL the operator from inside the API server, after the write is stored and
    before the operator sees the response: the harshest place to die.
    """

    def __init__(
        self,
        tmp: Path,
        *,
        fake: bool = True,
        profiles: Path | None = None,
        max_parallel: int = 4,
        step_seconds: float = 0.2,
        backoff_seconds: float = 0.1,
        namespaces: tuple[str, ...] = (),
        stepped: bool = False,
        require_service_accounts: bool = False,
    ) -> None:
        self.tmp = tmp
        self.require_service_accounts = require_service_accounts
        self.workspace = tmp / "workspace"
        self.workspace.mkdir(parents=True, exist_ok=True)
        self.fake_log_path = tmp / "fake-mtd.jsonl"
        self.emulator = Emulator(bookmark_interval=1.0)
        self.fake = fake
        self.profiles = profiles
        self.max_parallel = max_parallel
        self.step_seconds = step_seconds
        self.backoff_seconds = backoff_seconds
        self.namespaces = namespaces
        self.processes: list[subprocess.Popen] = []
        self.turnstile = Turnstile() if stepped else None
        self.writes: list[str] = []
        self.statuses: list[dict[str, Any]] = []  # each status write, timestamps stripped
        self.operator_config: dict[str, str] = {}
        self.kills: list[str] = []
        self.job_adds: Counter[str] = Counter()
        self.events = 0  # every change stored in the emulator, by anyone
        self._armed = False
        self._closed = False
        self._kill_prefixes: tuple[str, ...] = ()
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> Cluster:
        emu = self.emulator.__enter__()
        emu.ensure_namespace("default")
        for ns in self.namespaces:
            emu.ensure_namespace(ns)
        emu.create(yaml.safe_load(CRD.read_text()))
        self._unsubscribe = emu.store.subscribe(self._on_event)
        env = {"KUBECONFIG": emu.kubeconfig_path, "PATH": f"{VENV_BIN}:{os.environ['PATH']}"}
        if self.fake:
            bin_dir = self.tmp / "fake-bin"
            bin_dir.mkdir(exist_ok=True)
            mtd = bin_dir / "mtd"
            mtd.write_text(f'#!/bin/sh\nexec "{sys.executable}" -S "{FAKE_MTD}" "$@"\n')
            mtd.chmod(0o755)
            env.update({
                "PATH": f"{bin_dir}:{env['PATH']}",
                "MTD_FAKE_API": emu.url,
                "MTD_FAKE_LOG": str(self.fake_log_path),
                "MTD_FAKE_STEP_SECONDS": str(self.step_seconds),
                "MTD_REAL_MTD": str(VENV_BIN / "mtd"),
            })  # fmt: skip
            if self.profiles is not None:
                env["MTD_FAKE_PROFILES"] = str(self.profiles)
        self.runner = JobRunner(
            emu, path_map={str(self.workspace): str(self.workspace)},
            max_parallel=self.max_parallel, extra_env=env, backoff_seconds=self.backoff_seconds,
            gate=self.turnstile, require_service_accounts=self.require_service_accounts,
        ).start()  # fmt: skip
        self.deployments = DeploymentController(emu, delay=0.2, gate=self.turnstile).start()
        from kubernetes import client, config

        self.api_client = config.new_client_from_config(config_file=emu.kubeconfig_path)
        self.api = client.CustomObjectsApi(self.api_client)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._closed:
            return
        self._closed = True
        self._armed = False
        if self.turnstile is not None:
            self.turnstile.open()  # no runner or controller thread stays parked
        for process in self.processes:
            stop(process)
        self.runner.stop()
        self.deployments.stop()
        self._unsubscribe()
        errors = self.emulator.server_errors
        self.emulator.__exit__(None, None, None)
        assert errors == [], errors

    # -- the operator --------------------------------------------------------------

    @property
    def operator(self) -> subprocess.Popen | None:
        return self.processes[-1] if self.processes else None

    def operator_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": self.emulator.kubeconfig_path,
            "MTD_WORKSPACE_MOUNT_PATH": str(self.workspace),
            "MTD_TRAINER_GPUS": "0",
            "MTD_SERVING_GPUS": "0",
            **self.operator_config,
        }

    def start_operator(self, **config: str) -> subprocess.Popen:
        """Start `kopf run`; `config` (MTD_* variables) is kept for later restarts."""
        self.operator_config.update(config)
        env = {**self.operator_env(), "MTD_METRICS_PORT": str(free_port())}
        log = (self.tmp / f"operator-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
             "-m", "mtd_operator.kube.handlers"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        process.log_path = log.name  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def operator_logs(self, last: int = 6000) -> str:
        out = []
        for process in self.processes[-2:]:
            out.append(Path(process.log_path).read_text(errors="replace")[-last:])  # type: ignore[attr-defined]
        return "\n----\n".join(out)

    def all_operator_logs(self) -> str:
        return "\n".join(Path(p.log_path).read_text(errors="replace") for p in self.processes)  # type: ignore[attr-defined]

    def arm_kill(self, *prefixes: str) -> None:
        """SIGKILL the operator at its next write (whose description starts with one of
        `prefixes`, if given: "create", "patch", "status")."""
        with self._lock:
            self._armed = True
            self._kill_prefixes = prefixes

    def disarm(self) -> None:
        with self._lock:
            self._armed = False

    # -- observing writes ----------------------------------------------------------

    def _describe(self, event: Any) -> str | None:
        plural, obj, old = event.storage.plural, event.obj, event.old
        meta = obj.get("metadata", {})
        where = f"{event.namespace}/{meta.get('name')}"
        if event.type == "ADDED":
            if plural == "jobs":
                return f"create Job {where}"
            if plural == "configmaps" and ROLE in (meta.get("labels") or {}):
                return f"create ConfigMap {where}"
            if plural in ("deployments", "services"):
                return f"create {plural[:-1]} {where}"
        if event.type == "MODIFIED" and old is not None:
            before = old.get("metadata", {})
            if plural == "deployments" and meta.get("generation") != before.get("generation"):
                return f"patch deployment {where}"
            if plural == PLURAL and strip_times(obj.get("status") or {}) != strip_times(
                old.get("status") or {}
            ):
                ready = condition(obj, "Ready")
                return f"status {where} Ready={ready.get('status')}/{ready.get('reason')}"
        return None

    def _on_event(self, event: Any) -> None:  # under the store lock: quick
        self.events += 1
        if event.type == "ADDED" and event.storage.plural == "jobs":
            meta = event.obj["metadata"]
            self.job_adds[f"{meta.get('namespace')}/{meta['name']}"] += 1
        what = self._describe(event)
        if what is None:
            return
        self.writes.append(what)
        if what.startswith("status"):
            self.statuses.append(strip_times(event.obj.get("status") or {}))
        with self._lock:
            process = self.operator
            wanted = not self._kill_prefixes or what.startswith(self._kill_prefixes)
            if self._armed and wanted and process is not None and process.poll() is None:
                self._armed = False
                os.kill(process.pid, signal.SIGKILL)
                self.kills.append(what)

    # -- resources -----------------------------------------------------------------

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        ns, name = body["metadata"]["namespace"], body["metadata"]["name"]
        try:
            return self.api.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
        return self.api.patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name, {"spec": body["spec"]}
        )

    def get(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.emulator.try_get(MTD, name, namespace)

    def ready(self, name: str, namespace: str = "default") -> bool:
        obj = self.get(name, namespace)
        return (
            condition(obj, "Ready").get("status") == "True"
            and obj is not None
            and obj["status"].get("observedGeneration") == obj["metadata"]["generation"]
        )

    def wait_ready(self, name: str, namespace: str = "default", timeout: float = 120) -> dict:
        wait_until(lambda: self.ready(name, namespace), timeout, f"{namespace}/{name} Ready",
                   self.operator_logs)  # fmt: skip
        obj = self.get(name, namespace)
        assert obj is not None
        return obj

    def fake_log(self) -> list[dict[str, Any]]:
        if not self.fake_log_path.exists():
            return []
        return [json.loads(line) for line in self.fake_log_path.read_text().splitlines()]

    # -- stepping the world ----------------------------------------------------------

    def settled(self, name: str, namespace: str = "default") -> bool:
        """Whether the operator has caught up with the world: a pass of its Controller,
        run here with every write intercepted, would create, patch and delete nothing."""
        from kubernetes import client

        from mtd_operator.config import load_config
        from mtd_operator.kube.controller import Clients, Controller

        writes: list[str] = []
        apis = (
            client.CoreV1Api,
            client.BatchV1Api,
            client.AppsV1Api,
            client.CustomObjectsApi,
            client.NetworkingV1Api,
        )
        clients = Clients(*(_DryRun(api(self.api_client), writes) for api in apis))
        controller = Controller(load_config(self.operator_env()), clients)
        controller.reconcile(namespace, name)
        return not [w for w in writes if w != "create_namespaced_event"]

    def next_passage(self, namespace: str = "default") -> tuple[str, str] | None:
        """The world's next change, chosen from what the cluster shows (never from timing):
        Jobs not started yet start first, in name order; then the first running Job (by
        name) ends; then a Deployment not yet rolled out takes its next rollout step."""

        def key(obj: dict[str, Any]) -> str:
            return f"{namespace}/{obj['metadata']['name']}"

        jobs = sorted(self.emulator.list("batch/v1/jobs", namespace), key=key)
        live = [j for j in jobs if not any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in (j.get("status") or {}).get("conditions") or []
        )]  # fmt: skip
        waiting = [j for j in live if not (j.get("status") or {}).get("active")]
        if waiting:
            return "job-start", key(waiting[0])
        if live:
            return "job-end", key(live[0])  # or "job-retry": whichever the pod's exit gives
        pending = []
        for dep in sorted(self.emulator.list("apps/v1/deployments", namespace), key=key):
            status = dep.get("status") or {}
            observed = status.get("observedGeneration") == dep["metadata"].get("generation")
            replicas = (dep.get("spec") or {}).get("replicas", 1)
            if not observed or (status.get("readyReplicas") or 0) < replicas:
                pending.append(key(dep))
        if not pending:
            return None
        # The DeploymentController steps one rollout at a time (one thread, parked at the
        # turnstile): the one already parked goes first (serving, then the gateway).
        parked = (
            {w[1] for w in self.turnstile.waiting() if w[0] == "rollout"}
            if (self.turnstile)
            else set()
        )
        return "rollout", next((k for k in pending if k in parked), pending[0])

    def run_stepped(
        self,
        name: str,
        namespace: str = "default",
        *,
        kill_at: tuple[str, ...] | None = None,
        timeout: float = 240,
    ) -> int:
        """Drive a stepped cluster until `name` is Ready: wait until the operator has
        caught up (`settled`), then let the next change (`next_passage`) through, one at a
        time. With `kill_at`, the operator is SIGKILLed at each of its writes of that kind
        (see `arm_kill`) and started again. Returns how many changes were let through."""
        assert self.turnstile is not None, "not a stepped cluster"
        deadline = time.monotonic() + timeout
        passed = 0
        checked = -1  # `events` when `settled` last said no: nothing changed, still no
        if kill_at is not None:
            self.arm_kill(*kill_at)
        if self.operator is None:
            self.start_operator()
        while True:
            if time.monotonic() > deadline:
                raise AssertionError(f"not Ready in {timeout} s; kills: {self.kills}\n"
                                     f"{self.operator_logs()}")  # fmt: skip
            process = self.operator
            assert process is not None
            if process.poll() is not None:
                assert process.returncode == -9, self.operator_logs()
                if kill_at is not None:
                    self.arm_kill(*kill_at)
                self.start_operator()
            if self.events == checked:
                time.sleep(0.05)
                continue
            before = self.events
            if not self.settled(name, namespace):
                checked = before
                continue
            passage = self.next_passage(namespace)
            if passage is None:
                assert self.ready(name, namespace), (
                    f"settled, not Ready, and nothing left to let through\n{self.operator_logs()}"
                )
                return passed
            self._let_through(*passage)
            passed += 1

    def _let_through(self, kind: str, key: str) -> None:
        turnstile = self.turnstile
        assert turnstile is not None
        kinds = ("job-end", "job-retry") if kind == "job-end" else (kind,)

        def parked() -> tuple[str, str] | None:
            return next((w for w in turnstile.waiting() if w[1] == key and w[0] in kinds), None)

        turnstile.let_through(*wait_until(parked, 60, f"{kind} {key} at the turnstile",
                                          self.operator_logs))  # fmt: skip

    def assert_no_duplicates(self, *, pod_retries: bool = False) -> None:
        """No Job created twice; each step trained/evaluated once (the trainer's log).

        Without `pod_retries`, also: every Job's pod ran once and no step found its
        output already there. With it, a Job may retry a pod (e.g. after an API fault hit
        the pod's result write) as long as the retry found the work done, not redid it.
        """
        twice = {k: n for k, n in self.job_adds.items() if n > 1}
        assert not twice, f"Jobs created more than once: {twice}"
        done = Counter(e["output"] for e in self.fake_log() if not e["rerun"])
        again = {k: n for k, n in done.items() if n > 1}
        assert not again, f"steps whose work was done more than once: {again}"
        if pod_retries:
            return
        started = Counter(self.runner.started)
        again = {k: n for k, n in started.items() if n > 1}
        assert not again, f"Jobs whose pod ran more than once: {again}"
        reruns = [e for e in self.fake_log() if e["rerun"]]
        assert not reruns, f"finished steps ran again: {reruns}"


class _DryRun:
    """A Kubernetes API client whose writes are recorded by name instead of sent. A create
    of an object that exists answers 409, as the API server would (the Controller takes
    that as done), so only creates that would make something count."""

    def __init__(self, api: Any, writes: list[str]) -> None:
        self._api, self._writes = api, writes

    def __getattr__(self, name: str) -> Any:
        if not name.startswith(("create_", "patch_", "replace_", "delete_")):
            return getattr(self._api, name)

        def write(*args: Any, **kwargs: Any) -> None:
            read = getattr(self._api, name.replace("create_", "read_", 1), None)
            body = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            wanted = (body.get("metadata") or {}).get("name")
            if read is not None and name.startswith("create_namespaced_") and wanted:
                try:
                    read(wanted, args[0])
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                else:
                    raise ApiException(status=409, reason="AlreadyExists")
            self._writes.append(name)

        return write


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    clusters: list[Cluster] = []

    def make(name: str = "c", **kwargs: Any) -> Cluster:
        cluster = Cluster(tmp_path / name, **kwargs).__enter__()
        clusters.append(cluster)
        return cluster

    yield make
    for cluster in reversed(clusters):
        cluster.__exit__(None, None, None)
