"""Render the chart with a real helm binary (tools/get-helm.sh fetches one offline).

Without helm (or kubectl, for the tests that run the commands the chart prints) the chart
tests skip, except under CI (env CI set), where they fail: a CI run that silently skipped
the chart would prove nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from .scenarios import RELEASE, RELEASE_NAMESPACE, SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "multitask-operator"
GET_HELM = "tools/get-helm.sh"
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))


def minor(version: str) -> tuple[int, int]:
    major, minor_, *_ = version.removeprefix("v").split(".")
    return int(major), int(minor_)


def oldest_kubernetes() -> tuple[int, int]:
    """The minimum of the chart's kubeVersion, which must be of the form ">=1.N.0-0"."""
    match = re.fullmatch(r">=(\d+)\.(\d+)\.0-0", CHART_META["kubeVersion"])
    assert match, f"kubeVersion {CHART_META['kubeVersion']!r} is not >=1.N.0-0"
    return int(match[1]), int(match[2])


def supported_kube_versions() -> list[str]:
    """Every Kubernetes minor from the chart's kubeVersion to the newest that
    kubernetes_validate has schemas for; fails if a minor in between has none."""
    shipped = {minor(v) for v in kubernetes_validate.utils.all_versions()}
    newest = minor(kubernetes_validate.latest_version())
    oldest = oldest_kubernetes()
    assert oldest[0] == newest[0] == 1 and oldest <= newest
    wanted = [(1, n) for n in range(oldest[1], newest[1] + 1)]
    missing = [f"1.{n}" for _, n in wanted if (1, n) not in shipped]
    assert not missing, f"kubernetes_validate ships no schemas for {missing}"
    return [f"1.{n}.0" for _, n in wanted]


KUBE_VERSIONS = supported_kube_versions()


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
