"""Fixtures for the emulator's own tests; the generic ones live in the package."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from k8s_emulator import Emulator
from k8s_emulator.fixtures import (  # noqa: F401  (re-exported fixtures)
    KubectlFn,
    api_client,
    deployment_controller,
    emulator,
    job_runner,
    kubectl,
)

HERE = pathlib.Path(__file__).parent
WIDGETS_CRD = HERE / "widgets-crd.yaml"
WIDGETS = "test.example.com/v1/widgets"

__all__ = ["WIDGETS", "WIDGETS_CRD", "KubectlFn"]


@pytest.fixture
def widgets(emulator: Emulator) -> str:  # noqa: F811
    """Register the test CRD (as a POST of the CRD object) and return its resource path."""
    emulator.create(yaml.safe_load(WIDGETS_CRD.read_text()))
    return WIDGETS
