"""Where the operator tests run: the API emulator (default), or a real cluster.

Set `MTD_E2E_KUBECONFIG` to run the same tests against a real cluster (see
docs/install.md, "Running the operator tests on a cluster"). The operator then runs
locally against that cluster, the Jobs run there in the trainer image
(`MTD_E2E_TRAINER_IMAGE`), and the workspace PVC (`MTD_E2E_WORKSPACE_CLAIM`) must be
backed by a folder this machine sees too (`MTD_E2E_WORKSPACE_DIR`, e.g. a kind
extraMount behind a hostPath PersistentVolume), because the tests write the tiny model
and the data into it and read the adapters back.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Protocol

REAL_KUBECONFIG = os.environ.get("MTD_E2E_KUBECONFIG")
NAMESPACE = os.environ.get("MTD_E2E_NAMESPACE", "default")


class TestCluster(Protocol):
    kubeconfig: str
    workspace: Path  # the workspace as this machine sees it

    def get(self, ref: str, name: str, namespace: str | None = None) -> dict[str, Any]: ...
    def try_get(self, ref: str, name: str, namespace: str | None = None) -> dict | None: ...
    def list(self, ref: str, namespace: str | None = None) -> list[dict[str, Any]]: ...
    def started_jobs(self) -> list[str]: ...
    def api_calls(self) -> set[tuple[str, str, str]] | None: ...
    def local(self, container_path: str) -> Path: ...
    def operator_env(self) -> dict[str, str]: ...


class EmulatedCluster:
    def __init__(self, emulator, runner, workspace: Path):
        self.emulator, self.runner, self.workspace = emulator, runner, workspace
        self.kubeconfig = emulator.kubeconfig_path

    def get(self, ref, name, namespace=None):
        return self.emulator.get(ref, name, namespace)

    def try_get(self, ref, name, namespace=None):
        return self.emulator.try_get(ref, name, namespace)

    def list(self, ref, namespace=None):
        return self.emulator.list(ref, namespace)

    def started_jobs(self) -> list[str]:
        """Every pod attempt, in order: a Job that ran twice appears twice."""
        return [name.split("/", 1)[1] for name in self.runner.started]

    def api_calls(self):
        from .conftest import operator_calls

        return operator_calls(self.emulator)

    def watch_selectors(self) -> dict[str, set[str]]:
        """Each resource the operator (kopf) watched → the labelSelectors it sent."""
        found: dict[str, set[str]] = {}
        for request in list(self.emulator.requests):
            if request.params.get("watch") not in ("true", "1"):
                continue
            if not request.headers.get("User-Agent", "").startswith("kopf/"):
                continue
            plural = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            found.setdefault(plural, set()).add(request.params.get("labelSelector", ""))
        return found

    def patch_types(self) -> set[str]:
        """The content types of every PATCH the operator (or kopf) sent."""
        found = set()
        for request in list(self.emulator.requests):
            agent = request.headers.get("User-Agent", "")
            if str(request.method).upper().endswith("PATCH") and (
                agent.startswith("kopf/") or agent.startswith("multitask-operator/")
            ):
                found.add(request.headers.get("Content-Type", "").split(";")[0])
        return found

    def local(self, container_path: str) -> Path:
        return Path(container_path)  # the mount path is the local folder itself

    def operator_env(self) -> dict[str, str]:
        # The emulator runs a Job's first container, not native sidecars: vLLM evaluations
        # score in process here (their pod is run whole in tests/engine/test_vllm_eval_pod).
        return {
            "MTD_WORKSPACE_MOUNT_PATH": str(self.workspace),
            "MTD_SCORE_THROUGH_ENGINE": "false",
        }


class RealCluster:
    def __init__(self, kubeconfig: str):
        from kubernetes import config, dynamic

        self.kubeconfig = kubeconfig
        self.workspace = Path(os.environ["MTD_E2E_WORKSPACE_DIR"])
        self.mount = os.environ.get("MTD_E2E_WORKSPACE_MOUNT", "/workspace")
        self.client = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig))

    def _resource(self, ref: str):
        *group_version, plural = ref.split("/")
        return self.client.resources.get(api_version="/".join(group_version), name=plural)

    def get(self, ref, name, namespace=None):
        return self._resource(ref).get(name=name, namespace=namespace or NAMESPACE).to_dict()

    def try_get(self, ref, name, namespace=None):
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return self.get(ref, name, namespace)
        except NotFoundError:
            return None

    def list(self, ref, namespace=None):
        return self._resource(ref).get(namespace=namespace or NAMESPACE).to_dict()["items"]

    def started_jobs(self) -> list[str]:
        """Jobs by creation; a Job whose pods ran more than once appears once per pod."""
        jobs = sorted(self.list("batch/v1/jobs"), key=lambda j: j["metadata"]["creationTimestamp"])
        names = []
        for job in jobs:
            status = job.get("status") or {}
            runs = (status.get("succeeded") or 0) + (status.get("failed") or 0)
            names += [job["metadata"]["name"]] * max(1, runs)
        return names

    def api_calls(self):
        return None  # the API server's audit log has them; the emulator test checks RBAC

    def local(self, container_path: str) -> Path:
        return self.workspace / Path(container_path).relative_to(self.mount)

    def operator_env(self) -> dict[str, str]:
        return {
            "MTD_TRAINER_IMAGE": os.environ["MTD_E2E_TRAINER_IMAGE"],
            "MTD_WORKSPACE_CLAIM": os.environ.get("MTD_E2E_WORKSPACE_CLAIM", "multitask-workspace"),
            "MTD_WORKSPACE_MOUNT_PATH": self.mount,
            "MTD_TRAINER_GPUS": os.environ.get("MTD_E2E_TRAINER_GPUS", "0"),
            "MTD_SERVING_GPUS": os.environ.get("MTD_E2E_SERVING_GPUS", "0"),
        }


def kubectl_binary() -> str:
    import shutil
    import sys

    candidate = Path(sys.executable).parent / "kubectl"
    return str(candidate) if candidate.exists() else (shutil.which("kubectl") or "kubectl")


def run_kubectl(
    kubeconfig: str, home: Path, *args: str, input: str | None = None, timeout: float = 30
):
    env = {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "HOME": str(home),
        "KUBECACHEDIR": str(home / "cache"),
    }
    result = subprocess.run(
        [kubectl_binary(), "-n", NAMESPACE, *args],
        input=input, capture_output=True, text=True, timeout=timeout, env=env,
    )  # fmt: skip
    if result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result
