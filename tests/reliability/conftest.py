"""A whole cluster for the reliability tests: the API emulator with the project's CRD, a
JobRunner (playing kubelet) running a FAKE trainer by default (see fake_mtd.py), a
DeploymentController, and the real operator as a `kopf run` process that a test can
SIGKILL at any API write it makes and start again.
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

from tests.k8s_emulator import DeploymentController, Emulator, JobRunner
from tests.tiny_tasks import task, write_task_data

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml"
VENV_BIN = Path(sys.executable).parent
FAKE_MTD = Path(__file__).with_name("fake_mtd.py")
MTD = "multitask.dev/v1alpha1/multitaskdeployments"
GROUP, VERSION, PLURAL = "multitask.dev", "v1alpha1", "multitaskdeployments"
ROLE = "multitask.dev/role"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ----------------------------------------------------------------------- data and specs


write_data = write_task_data


SENTIMENT = task("sentiment", "classification", labels=["pos", "neg"], baseline={"score": 0.5})
SOUNDS = task("sounds", "generation", metric="exactMatch", baseline={"score": 0.5})
AGREE = task("agree", "classification", labels=["yes", "no"], baseline={"train": True})
ALL_TASKS = [SENTIMENT, SOUNDS, AGREE]


def resource(name: str, namespace: str, tasks: list[dict], **training: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "MultiTaskDeployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "baseModel": {"uri": "models/tiny"},
            "tasks": tasks,
            "training": {
                "highResourceMinExamples": 35,
                "stage1": {"maxSteps": 2},
                "stage2": {"maxSteps": 2},
                "baseline": {"maxSteps": 2},
                "batchSize": 4,
                "maxSeqLength": 64,
                "lora": {"rank": 4, "alpha": 8},
                **training,
            },
        },
    }


def precomputed_profiles(workspace: Path, tasks: list[dict]) -> Path:
    """Profiles of the tasks, computed by the real profiler once, for the fake `mtd profile`."""
    from mtd_operator.api.spec import MultiTaskDeploymentSpec
    from mtd_operator.core.profile import profile_spec

    spec = MultiTaskDeploymentSpec.model_validate(resource("x", "default", tasks)["spec"])
    profiles, problems = profile_spec(spec, workspace)
    assert not problems, problems
    path = workspace / "profiles.json"
    path.write_text(json.dumps({k: v.to_json() for k, v in profiles.items()}))
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


def wait_until(predicate: Callable[[], Any], timeout: float, what: str,
               logs: Callable[[], str] = lambda: "") -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{logs()}")


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
    ) -> None:
        self.tmp = tmp
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
        self.writes: list[str] = []
        self.kills: list[str] = []
        self.job_adds: Counter[str] = Counter()
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
        ).start()  # fmt: skip
        self.deployments = DeploymentController(emu, delay=0.2).start()
        from kubernetes import client, config

        self.api = client.CustomObjectsApi(
            config.new_client_from_config(config_file=emu.kubeconfig_path)
        )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._closed:
            return
        self._closed = True
        self._armed = False
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
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

    def start_operator(self, **config: str) -> subprocess.Popen:
        env = {
            **os.environ,
            "KUBECONFIG": self.emulator.kubeconfig_path,
            "MTD_WORKSPACE_MOUNT_PATH": str(self.workspace),
            "MTD_TRAINER_GPUS": "0",
            "MTD_SERVING_GPUS": "0",
            "MTD_METRICS_PORT": str(free_port()),
            **config,
        }
        log = (self.tmp / f"operator-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", "--standalone", "--all-namespaces",
             "-m", "mtd_operator.kopf_handlers"],
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
        if event.type == "ADDED" and event.storage.plural == "jobs":
            meta = event.obj["metadata"]
            self.job_adds[f"{meta.get('namespace')}/{meta['name']}"] += 1
        what = self._describe(event)
        if what is None:
            return
        self.writes.append(what)
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
