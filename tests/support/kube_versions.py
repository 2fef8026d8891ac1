"""The Kubernetes minors we support: from the chart's kubeVersion to the newest schemas.

Manifests (the chart's and `mtd manifests`') are validated against each of them with
kubernetes_validate, so a field a newer minor added, or an older one requires, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "multitask-operator"
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
