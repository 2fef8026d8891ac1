"""The catalogue built from status, and the gateway's manifests (pure, no cluster)."""

from __future__ import annotations

import json

from mtd_contract.catalogue import Catalogue
from mtd_operator.core.catalogue import build_catalogue
from mtd_operator.core.reconcile import adapter_update
from mtd_operator.kube import builders
from tests.kube.test_builders import BODY, CONFIG, finished_decision, make_spec


def test_catalogue_follows_the_status_rows() -> None:
    spec = make_spec(serving={"engine": "vllm"})
    decision = finished_decision(spec)
    catalogue = build_catalogue(spec, decision.status, decision.serving.revision)
    rows = {row.name: row for row in decision.status.tasks}
    assert [t.name for t in catalogue.tasks] == ["a", "g"]
    for entry in catalogue.tasks:
        assert entry.adapter == rows[entry.name].adapter is not None
        assert entry.metric == rows[entry.name].metric
        # The status row's verdict, exactly: none here (no baseline, no scores), where the
        # catalogue used to say Inconclusive for a task status.json leaves unjudged.
        assert entry.verdict == rows[entry.name].verdict is None
    assert catalogue.task("a").labels == ["x", "y"] and catalogue.task("a").type == (
        "classification"
    )
    # The document round-trips: what the operator writes is what the gateway reads.
    text = catalogue.to_json()
    assert Catalogue.model_validate_json(text) == catalogue
    assert json.loads(text)["revision"] == decision.serving.revision


def test_catalogue_config_map_and_gateway_objects() -> None:
    spec = make_spec(serving={"engine": "tgi"})
    decision = finished_decision(spec)
    catalogue = build_catalogue(spec, decision.status, decision.serving.revision)
    cm = builders.catalogue_config_map(BODY, catalogue)
    assert cm["metadata"]["name"] == "support-catalogue"
    assert cm["data"] == {"catalogue.json": catalogue.to_json()}
    assert cm["metadata"]["ownerReferences"][0]["uid"] == "uid-1"

    deployment = builders.gateway_deployment(BODY, spec, CONFIG)
    assert deployment["metadata"]["name"] == "support-gateway"
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["command"]
    assert command[:2] == ["mtd", "gateway"]
    assert command[command.index("--upstream") + 1] == "http://support-serving.ml.svc"
    assert command[command.index("--engine") + 1] == "tgi" and "--base-model" not in command
    assert command[command.index("--catalogue") + 1] == "/etc/mtd-catalogue/catalogue.json"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "catalogue")
    assert mount["mountPath"] == "/etc/mtd-catalogue" and "subPath" not in mount
    volume = next(v for v in pod["volumes"] if v["name"] == "catalogue")
    assert volume["configMap"]["name"] == "support-catalogue"
    # Least privilege: no API token, non-root, read-only root, no GPU.
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert container["image"] == CONFIG.gateway_image

    service = builders.gateway_service(BODY)
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert builders.gateway_endpoint(BODY) == "http://support-gateway.ml.svc"


def test_vllm_gateway_names_the_served_base_model() -> None:
    spec = make_spec(serving={"engine": "vllm"})
    command = builders.gateway_deployment(BODY, spec, CONFIG)["spec"]["template"]["spec"][
        "containers"
    ][0]["command"]
    assert command[command.index("--engine") + 1] == "vllm"
    assert command[command.index("--base-model") + 1] == "/models/models/smollm2"


def test_rollout_strategies() -> None:
    surge = make_spec(serving={"engine": "tgi"})
    one = make_spec(serving={"engine": "tgi", "rollout": "oneAtATime"})
    assert builders.serving_strategy(surge)["rollingUpdate"] == {
        "maxUnavailable": 0,
        "maxSurge": 1,
    }
    assert builders.serving_strategy(one)["rollingUpdate"] == {"maxUnavailable": 1, "maxSurge": 0}
    assert adapter_update(surge) == "Surge" and adapter_update(one) == "OneAtATime"
    assert adapter_update(make_spec(serving={"engine": "vllm"})) == "RuntimeLoad"
    decision = finished_decision(one)
    assert decision.status.serving.adapter_update == "OneAtATime"


def test_catalogue_verdicts_are_the_status_verdicts() -> None:
    """`/tasks` and status.json tell the same verdicts (issue #30): judged rows their own,
    unjudged rows none."""
    spec = make_spec(serving={"engine": "vllm"})
    decision = finished_decision(spec)
    a, g = decision.status.tasks
    status = decision.status.model_copy(
        update={"tasks": [a.model_copy(update={"verdict": "NotQualified"}), g]}
    )
    catalogue = build_catalogue(spec, status, decision.serving.revision)
    assert {t.name: t.verdict for t in catalogue.tasks} == {"a": "NotQualified", "g": None}
    assert "verdict" not in json.loads(catalogue.to_json())["tasks"][1]
