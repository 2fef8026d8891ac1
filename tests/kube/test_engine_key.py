"""The engine's API key and the serving NetworkPolicy, as the operator renders them."""

from __future__ import annotations

import pytest

from mtd_operator.config import OperatorConfig, load_config
from mtd_operator.core.catalogue import build_catalogue
from mtd_operator.gateway.command import GATEWAY_KEY_ENV
from mtd_operator.kube import builders
from mtd_operator.kube.engine_key import SECRET_KEY, engine_api_key, read_master
from tests.kube.test_builders import BODY, CONFIG, finished_decision, make_spec

MASTER = b"m" * 40


def test_the_key_is_stable_per_resource_and_differs_between_resources():
    key = engine_api_key(MASTER, "ml", "support", "uid-1")
    assert key == engine_api_key(MASTER, "ml", "support", "uid-1")  # restarts agree
    assert len(key) == 64
    others = {
        engine_api_key(MASTER, "ml", "support", "uid-2"),  # deleted and created again
        engine_api_key(MASTER, "ml2", "support", "uid-1"),
        engine_api_key(MASTER, "ml", "other", "uid-1"),
        engine_api_key(b"n" * 40, "ml", "support", "uid-1"),
    }
    assert key not in others and len(others) == 4


def test_the_operators_secret_is_read_from_its_file_and_must_be_long_enough(tmp_path):
    assert read_master(OperatorConfig()) is None
    path = tmp_path / "key"
    path.write_bytes(MASTER + b"\n")
    assert read_master(OperatorConfig(engine_key_file=str(path))) == MASTER
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match=r"MTD_ENGINE_KEY_FILE.*at least 32"):
        read_master(OperatorConfig(engine_key_file=str(path)))
    assert load_config({"MTD_ENGINE_KEY_FILE": ""}).engine_key_file is None


def keyed_objects(engine: str, key_file: str | None) -> dict[str, dict]:
    spec = make_spec(serving={"engine": engine})
    config = CONFIG.model_copy(
        update={"engine_key_file": key_file, "operator_namespace": "mto-system"}
    )
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, config, "ml", "support")
    catalogue = build_catalogue(spec, decision.status, decision.serving.revision)
    key = "k" * 64 if builders.keyed(spec, config) else None
    serving = builders.ServingInputs(BODY, spec, config, decision.serving, where)
    objects = builders.serving_objects(serving, catalogue, engine_key=key)
    return {f"{o['kind']}/{o['metadata']['name']}": o for o in objects}


def env_of(deployment: dict) -> dict[str, dict]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {item["name"]: item for item in container["env"]}


def test_vllm_reads_its_key_from_the_resources_secret_and_so_does_the_gateway():
    objects = keyed_objects("vllm", "/etc/mtd-engine-key/key")
    secret = objects["Secret/support-engine-key"]
    assert secret["stringData"] == {SECRET_KEY: "k" * 64}
    assert secret["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    ref = {"secretKeyRef": {"name": "support-engine-key", "key": SECRET_KEY}}
    assert env_of(objects["Deployment/support-serving"])["VLLM_API_KEY"]["valueFrom"] == ref
    gateway_env = env_of(objects["Deployment/support-gateway"])
    assert gateway_env[GATEWAY_KEY_ENV]["valueFrom"] == ref
    # the key never appears in a pod template
    assert "k" * 64 not in str(objects["Deployment/support-serving"])


@pytest.mark.parametrize(("engine", "key_file"), [("vllm", None), ("tgi", "/etc/key")])
def test_no_key_without_the_operators_secret_or_for_tgi(engine, key_file):
    objects = keyed_objects(engine, key_file)
    assert not [name for name in objects if name.startswith("Secret/")]
    assert "VLLM_API_KEY" not in env_of(objects["Deployment/support-serving"])
    assert GATEWAY_KEY_ENV not in env_of(objects["Deployment/support-gateway"])


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_only_the_gateway_and_the_operator_may_reach_the_serving_port(engine):
    objects = keyed_objects(engine, None)
    policy = objects["NetworkPolicy/support-serving"]["spec"]
    serving = objects["Deployment/support-serving"]["spec"]["template"]["metadata"]["labels"]
    gateway = objects["Deployment/support-gateway"]["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= serving.items()
    assert not policy["podSelector"]["matchLabels"].items() <= gateway.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": builders.SERVING_PORT}]
    gateway_peer, operator_peer = rule["from"]
    assert gateway_peer["podSelector"]["matchLabels"].items() <= gateway.items()
    assert operator_peer == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mto-system"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "operator"}},
    }
