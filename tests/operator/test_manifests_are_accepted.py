"""What `mtd manifests` renders for any valid resource name, the API server accepts.

Each child object is created in the API emulator, which validates as the API server does
(tools/k8s_emulator/k8s_emulator/validation.py, each rule cited): names per kind, labels,
selectors, Indexed Job hostnames, pod subdomains. Names of 1, 27, 63 and 253 characters,
with a leading digit and with dots, on a step of 2 nodes x 8 GPUs (tests/kube/
test_child_names.py checks the same output against kube/names.py's own rules)."""

from __future__ import annotations

import pytest
import yaml

from k8s_emulator import Emulator
from k8s_emulator.errors import ApiError
from mtd_operator.cli import main
from tests.kube.test_child_names import NAMES, spec_named


@pytest.fixture(scope="module")
def emulator():
    with Emulator() as emu:
        yield emu


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_every_rendered_child_is_created(name, emulator, capsys, tmp_path):
    assert main(["manifests", spec_named(name, tmp_path), "--namespace", "ml"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    emulator.ensure_namespace("ml")
    refused = []
    for obj in objects:
        if obj["kind"] == "MultiTaskDeployment":
            continue
        try:
            emulator.create(obj)
        except ApiError as exc:
            refused.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc}")
    assert not refused, "\n".join(refused)
    kinds = {o["kind"] for o in objects}
    assert {"Job", "ConfigMap", "Service", "Deployment", "NetworkPolicy"} <= kinds, kinds
