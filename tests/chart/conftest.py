"""Render the chart with a real helm binary (tools/get-helm.sh fetches one offline).

Without helm (or kubectl, for the tests that run the commands the chart prints) the chart
tests skip, except under CI (env CI set), where they fail: a CI run that silently skipped
the chart would prove nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

# Re-exported for the chart tests.
from tests.support.kube_versions import CHART_META, KUBE_VERSIONS, oldest_kubernetes  # noqa: F401

from .scenarios import RELEASE, RELEASE_NAMESPACE, SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "multitask-operator"
GET_HELM = "tools/get-helm.sh"


def find_helm() -> str | None:
    local = ROOT / "tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which("helm")


@pytest.fixture(scope="session")
def helm() -> str:
    path = find_helm()
    if path is None:
        message = f"no helm binary at tools/bin/helm or on PATH: run {GET_HELM}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("no kubectl on PATH")
        pytest.skip("no kubectl on PATH")
    return path


HelmRunner = Callable[..., subprocess.CompletedProcess]


@pytest.fixture(scope="session")
def run_helm(helm: str) -> HelmRunner:
    def run(*args: str, values: dict[str, Any] | None = None, check: bool = True):
        command = [helm, *args]
        if values is not None:
            # Values go through a file (as a user's -f), which keeps their types exact.
            command += ["--values", "-"]
        result = subprocess.run(
            command,
            input=yaml.safe_dump(values) if values is not None else None,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result

    return run


class Rendered:
    """The documents `helm template` produced, with lookups by kind and name."""

    def __init__(self, text: str):
        self.text = text
        self.docs = [d for d in yaml.safe_load_all(text) if d]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str) -> dict[str, Any]:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, found {len(found)}"
        return found[0]

    def operator_container(self) -> dict[str, Any]:
        return self.one("Deployment")["spec"]["template"]["spec"]["containers"][0]

    def operator_env(self) -> dict[str, str]:
        return {e["name"]: e["value"] for e in self.operator_container()["env"]}


@pytest.fixture(scope="session")
def render(run_helm: HelmRunner) -> Callable[[str], Rendered]:
    """Render a named scenario (tests/chart/scenarios.py) once per session."""
    cache: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cache:
            result = run_helm(
                "template",
                RELEASE,
                str(CHART),
                "--namespace",
                RELEASE_NAMESPACE,
                values=SCENARIOS[name],
            )
            cache[name] = Rendered(result.stdout)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def notes(run_helm: HelmRunner) -> Callable[[str], str]:
    """The NOTES a user sees after `helm install` of a named scenario."""
    cache: dict[str, str] = {}

    def get(name: str) -> str:
        if name not in cache:
            result = run_helm(
                "install",
                RELEASE,
                str(CHART),
                "--namespace",
                RELEASE_NAMESPACE,
                "--dry-run=client",
                values=SCENARIOS[name],
            )
            cache[name] = result.stdout.split("\nNOTES:\n", 1)[1]
        return cache[name]

    return get
