"""Fixtures for operator tests: the API emulator, kubectl, the job runner, the operator."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from k8s_emulator import DeploymentController, Emulator, JobRunner
from tests.support.image_venvs import image_venv
from tests.support.net import free_port
from tests.support.processes import stop
from tests.support.waiting import wait_until as wait_for_value

from .clusters import REAL_KUBECONFIG, EmulatedCluster, RealCluster, TestCluster, run_kubectl

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml"


@pytest.fixture(scope="session")
def image_venvs() -> dict[str, Path]:
    """Per image, a virtualenv holding exactly what its Dockerfile installs."""
    return {image: image_venv(image) for image in ("operator", "trainer")}


@pytest.fixture
def cluster(tmp_path: Path, image_venvs: dict[str, Path]) -> Iterator[TestCluster]:
    """The emulator with the CRD, a job runner playing kubelet (each Job's command run from
    the trainer image's virtualenv) and a deployment controller; or a real cluster when
    MTD_E2E_KUBECONFIG is set (see clusters.py)."""
    if REAL_KUBECONFIG:
        real = RealCluster(REAL_KUBECONFIG)
        run_kubectl(real.kubeconfig, tmp_path, "apply", "-f", str(CRD))
        yield real
        return
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    with Emulator(bookmark_interval=1.0) as emulator:
        run_kubectl(emulator.kubeconfig_path, tmp_path, "apply", "-f", str(CRD))
        runner = JobRunner(
            emulator,
            path_map={str(workspace): str(workspace)},
            max_parallel=2,
            extra_env={"KUBECONFIG": emulator.kubeconfig_path},
            image_bin=str(image_venvs["trainer"] / "bin"),
        )
        with runner, DeploymentController(emulator, delay=0.2):
            yield EmulatedCluster(emulator, runner, workspace)
        assert emulator.server_errors == []


@pytest.fixture
def kubectl(cluster: TestCluster, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    def run(*args: str, input: str | None = None, timeout: float = 30):
        return run_kubectl(cluster.kubeconfig, tmp_path, *args, input=input, timeout=timeout)

    return run


OperatorFactory = Callable[..., subprocess.Popen]


@pytest.fixture
def start_operator(
    cluster: TestCluster, tmp_path: Path, image_venvs: dict[str, Path]
) -> Iterator[OperatorFactory]:
    """Start `kopf run` with our handlers as a process, from the operator image's
    virtualenv, with only the environment the chart gives it."""
    processes: list[subprocess.Popen] = []
    operator_bin = image_venvs["operator"] / "bin"
    home = tmp_path / "operator-home"
    home.mkdir()

    def start(**config: str) -> subprocess.Popen:
        env = {
            "PATH": f"{operator_bin}:/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "KUBECONFIG": cluster.kubeconfig,
            "MTD_TRAINER_GPUS": "0",
            "MTD_SERVING_GPUS": "0",
            "MTD_METRICS_PORT": str(free_port()),
            **cluster.operator_env(),
            **config,
        }
        log = (tmp_path / f"operator-{len(processes)}.log").open("w")
        process = subprocess.Popen(
            [str(operator_bin / "kopf"), "run", "--standalone", "--all-namespaces",
             "-m", "mtd_operator.kube.handlers"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=home,
        )  # fmt: skip
        process.log_path = log.name  # type: ignore[attr-defined]
        processes.append(process)
        return process

    yield start
    for process in processes:
        stop(process)


def wait_until(predicate: Callable[[], object], timeout: float, what: str, log: Path | None = None):
    """Wait as everywhere, and on a timeout show the tail of the operator's log."""

    def tail() -> str:
        return log.read_text()[-4000:] if log and log.exists() else ""

    return wait_for_value(predicate, timeout, what, tail, every=0.2)


def operator_calls(emu: Emulator) -> set[tuple[str, str, str]]:
    """(api group, resource[/subresource], verb) of every request the operator made."""
    calls = set()
    for request in list(emu.requests):
        agent = request.headers.get("User-Agent", "")
        if not (agent.startswith("kopf/") or agent.startswith("multitask-operator/")):
            continue
        path = request.url.path
        parts = [p for p in path.split("/") if p]
        if len(parts) < (2 if parts[:1] == ["api"] else 3) or parts[0] not in ("api", "apis"):
            continue  # discovery, version, openapi: no RBAC
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if rest[:1] == ["namespaces"] and len(rest) >= 3:
            rest = rest[2:]
        if not rest:
            continue  # a group-version discovery document
        resource, name, sub = (
            rest[0],
            rest[1] if len(rest) > 1 else None,
            rest[2] if len(rest) > 2 else None,
        )
        method = str(request.method).upper().rsplit(".", 1)[-1]
        if method == "GET":
            verb = (
                "watch"
                if request.params.get("watch") in ("true", "1")
                else ("get" if name else "list")
            )
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
                method, method.lower()
            )
        calls.add((group, f"{resource}/{sub}" if sub else resource, verb))
    return calls
