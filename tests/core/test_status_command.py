"""`mtd status` and `mtd --version`, and help for every argument (issue #30)."""

from __future__ import annotations

import argparse
import io
import json

import pytest
from kubernetes.client.exceptions import ApiException

from mtd_operator.cli import build_parser, main
from mtd_operator.local.runner import LocalRun
from mtd_operator.status_view import cluster_status, render
from tests.core.test_hostile_specs import resource, task


def test_every_argument_of_every_command_has_help():
    missing = []
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, command in subparsers.choices.items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"mtd {name} {'/'.join(action.option_strings) or action.dest}")
    assert missing == []


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("mtd 0.")


def test_status_prints_what_mtd_run_printed(write_spec, tmp_path, capsys):
    spec = write_spec(resource([task("a"), task("b", baseline={"score": 0.5})]))
    workspace = tmp_path / "ws"
    with LocalRun(spec, workspace, out=io.StringIO()) as local:
        decision = local.decide()  # what a run writes before its first step
    assert main(["status", "--workspace", str(workspace)]) == 0
    out = capsys.readouterr().out
    ready = next(c for c in decision.status.conditions if c.type == "Ready")
    assert out.startswith(
        f"{local.resource.metadata.name} ({workspace / local.resource.metadata.name})"
    )
    assert f"[Ready={ready.status}] {ready.reason}: {ready.message}" in out
    assert "TASK" in out and "KIND" in out and "given" in out  # b's baseline, from the spec
    assert main(["status", "nope", "--workspace", str(workspace)]) == 2
    assert "no such file; run `mtd run` first" in capsys.readouterr().err


class FakeCustomObjects:
    """CustomObjectsApi's two calls `mtd status --kube` makes, over given bodies."""

    def __init__(self, bodies: list[dict]) -> None:
        self.bodies = {b["metadata"]["name"]: b for b in bodies}

    def list_namespaced_custom_object(self, group, version, namespace, plural):
        assert (group, version, plural) == ("multitask.dev", "v1alpha1", "multitaskdeployments")
        return {"items": list(self.bodies.values())}

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        if name not in self.bodies:
            raise ApiException(status=404, reason="Not Found")
        return self.bodies[name]


def test_status_from_the_cluster_reads_the_resource(write_spec, tmp_path):
    spec = write_spec(resource([task("a")]))
    with LocalRun(spec, tmp_path / "ws", out=io.StringIO()) as local:
        status = local.decide().status.to_api()
    doc = json.loads((local.root / "resource.json").read_text())
    body = {
        **doc,
        "metadata": {**doc["metadata"], "namespace": "ml", "uid": "u", "resourceVersion": "9"},
        "status": status,
    }
    seen = cluster_status(FakeCustomObjects([body]), "ml", None)
    assert seen.where == "namespace ml" and seen.resource is not None
    assert render(seen).splitlines()[1].startswith("  [")
    with pytest.raises(LookupError, match="'other' not found in namespace ml"):
        cluster_status(FakeCustomObjects([body]), "ml", "other")
    two = {**body, "metadata": {**body["metadata"], "name": "second"}}
    with pytest.raises(LookupError, match="holds several"):
        cluster_status(FakeCustomObjects([body, two]), "ml", None)
