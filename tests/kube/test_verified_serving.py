"""On a cluster the digests a step recorded travel with its result to the operator, and the
serving pods refuse to start on a folder that differs (issue #29)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtd_contract.digests import folder_digest, folder_files
from mtd_operator.core.reconcile import StepState, reconcile
from mtd_operator.kube import builders
from mtd_operator.pod.verify import verify
from tests.kube.test_builders import BODY, CONFIG, make_spec, steps_and_render
from tests.support.safetensors_files import write_safetensors

WEIGHTS = "adapter/adapter_model.safetensors"


def recorded(steps, digest: str = "ab" * 32) -> dict[str, StepState]:
    """Every step done; training steps' results record their adapter's files."""
    return {
        s.key: StepState(
            "Succeeded",
            result={"tasks": {}} if s.verb == "evaluate" else {"files": {WEIGHTS: digest}},
        )
        for s in steps
    }


def decide(spec, digest: str = "ab" * 32):
    the_plan, steps, _, _ = steps_and_render(spec)
    return reconcile(spec, the_plan, recorded(steps, digest), None, now="2026-01-01T00:00:00Z")


def test_recorded_digests_reach_the_desired_serving_and_its_revision():
    spec = make_spec(serving={"engine": "vllm"})
    decision = decide(spec)
    expected = folder_digest({"adapter_model.safetensors": "ab" * 32})
    assert decision.serving.digests == dict.fromkeys(decision.serving.adapters, expected)
    # A rebuilt adapter in the same folder is a new revision: the engine must load it anew.
    assert decide(spec, "cd" * 32).serving.revision != decision.serving.revision


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_serving_pods_verify_every_folder_before_the_engine_starts(engine):
    spec = make_spec(serving={"engine": engine})
    decision = decide(spec)
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    pod = builders.serving_deployment(
        builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
    )["spec"]["template"]["spec"]
    (verify_init,) = pod["initContainers"]
    assert verify_init["image"] == CONFIG.trainer_image
    assert verify_init["command"][:2] == ["mtd", "verify"]
    assert verify_init["securityContext"]["runAsNonRoot"] is True
    assert verify_init["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["name"]: m for m in verify_init["volumeMounts"]}
    assert mounts["workspace"]["readOnly"] is True
    folders = {where.artifact(p): d for p, d in zip(
        decision.serving.adapters.values(), decision.serving.digests.values(), strict=True
    )}  # fmt: skip
    if engine == "vllm":
        # Runtime loading: the digests live beside the adapter list, so the template stays.
        assert verify_init["command"][2:] == ["--digests", "/etc/mtd-adapters/digests.json"]
        assert "adapters" in mounts
        cm = builders.adapters_config_map(
            builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
        )
        assert json.loads(cm["data"]["digests.json"]) == folders
    else:
        pairs = dict(p.rsplit("=", 1) for p in verify_init["command"][2:])
        assert pairs == folders


def test_no_digests_recorded_means_no_verify_container():
    spec = make_spec(serving={"engine": "vllm"})
    the_plan, steps, _, _ = steps_and_render(spec)
    observed = {s.key: StepState("Succeeded", result={"tasks": {}}) for s in steps}
    decision = reconcile(spec, the_plan, observed, None, now="2026-01-01T00:00:00Z")
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    pod = builders.serving_deployment(
        builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
    )
    assert "initContainers" not in pod["spec"]["template"]["spec"]


def test_mtd_verify_passes_a_recorded_folder_and_refuses_a_changed_one(
    tmp_path, capsys, monkeypatch
):
    folder = tmp_path / "adapter"
    weights = write_safetensors(folder / "adapter_model.safetensors", {"w": ("F32", [1.0])})
    digests = tmp_path / "digests.json"
    digests.write_text(json.dumps({str(folder): folder_digest(folder_files(folder))}))
    message = tmp_path / "termination"
    assert verify(digests, []) == 0
    weights.write_bytes(weights.read_bytes()[:-1])
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(message))
    assert verify(digests, []) == 2
    assert (
        f"refusing to serve 1 of 1 folders, which differ from what their steps recorded: {folder}"
        in message.read_text()
    )
    assert verify(None, [f"{tmp_path / 'gone'}=00"]) == 2
    assert "gone: missing" in message.read_text()
    assert verify(None, ["no-equals-sign"]) == 2
    assert "expected FOLDER=DIGEST" in message.read_text()
    assert "refusing to serve" in capsys.readouterr().err
    assert Path(folder).exists()  # nothing is moved or deleted: the pod only refuses
