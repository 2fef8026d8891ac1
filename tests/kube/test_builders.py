"""Pure manifest builders: names, Jobs, the serving Deployment for TGI and vLLM."""

from __future__ import annotations

import json

import pytest

from mtd_operator.api.spec import MultiTaskDeploymentSpec
from mtd_operator.config import OperatorConfig, load_config
from mtd_operator.core.planner import plan
from mtd_operator.core.reconcile import reconcile
from mtd_operator.core.render import render_step
from mtd_operator.core.steps import pipeline_steps
from mtd_operator.kube import builders
from tests.core.specs import task
from tests.core.test_planner import profiles_of

BODY = {"metadata": {"name": "support", "namespace": "ml", "uid": "uid-1"}}


def make_spec(**overrides) -> MultiTaskDeploymentSpec:
    body = {
        "baseModel": {"uri": "pvc://models/smollm2"},
        "tasks": [task("a", labels=["x", "y"]), task("g", "generation")],
        **overrides,
    }
    return MultiTaskDeploymentSpec.model_validate(body)


CONFIG = OperatorConfig(
    trainer_image="registry.example/trainer:1",
    node_selector={"gpu": "a100"},
    tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    image_pull_secrets=["regcred"],
    trainer_gpus=2,
    serving_gpus=1,
)


def test_child_names_are_deterministic_and_short():
    assert (
        builders.child_name("support", "train-binary-stage1-abc")
        == "support-train-binary-stage1-abc"
    )
    long = builders.child_name("x" * 60, "train-multiclass-stage2-0123456789")
    assert len(long) <= 63 and long == builders.child_name(
        "x" * 60, "train-multiclass-stage2-0123456789"
    )
    other = builders.child_name("x" * 60, "train-multiclass-stage2-9876543210")
    assert long != other
    assert len(builders.result_name(long)) <= 63


def test_base_model_paths():
    assert builders.base_model_path("pvc://multitask-workspace/m/s", CONFIG) == "/workspace/m/s"
    assert builders.base_model_path("pvc://models/smollm2", CONFIG) == "/models/models/smollm2"
    assert builders.base_model_path("hf://org/name", CONFIG) == "hf://org/name"
    assert builders.base_model_path("models/x", CONFIG) == "/workspace/models/x"
    assert builders.base_model_path("/abs/x", CONFIG) == "/abs/x"


def steps_and_render(spec):
    result = plan(spec, profiles_of({t.name: 10 for t in spec.tasks}))
    steps = pipeline_steps(result)
    by_key = {s.key: s for s in steps}
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    return result, steps, by_key, where


def test_step_job_requests_gpus_and_mounts_the_workspace():
    spec = make_spec()
    result, steps, by_key, where = steps_and_render(spec)
    step = steps[0]
    rendered = render_step(step, spec, result, by_key, where, "support")
    job, cm = builders.step_objects(BODY, spec, CONFIG, step, rendered)
    assert job["metadata"]["name"] == cm["metadata"]["name"] == f"support-{step.key}"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert json.loads(cm["data"]["config.json"]) == rendered
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example/trainer:1"
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert pod["nodeSelector"] == {"gpu": "a100"} and pod["imagePullSecrets"] == [
        {"name": "regcred"}
    ]
    assert pod["serviceAccountName"] == "multitask-trainer"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert {"/workspace", "/dev/shm", "/etc/mtd", "/models/models"} <= set(mounts)
    assert container["command"][:3] == ["mtd", "step", step.verb]
    assert job["spec"]["backoffLimit"] == CONFIG.job_backoff_limit
    env = {e["name"]: e["value"] for e in container["env"]}
    assert json.loads(env["MTD_OWNER_REFERENCE"])["name"] == "support"


def finished_decision(spec):
    result, steps, _, _ = steps_and_render(spec)
    from mtd_operator.core.reconcile import StepState

    observed = {s.key: StepState("Succeeded", result={"tasks": {}}) for s in steps}
    return reconcile(spec, result, observed, None, now="2026-01-01T00:00:00Z")


def test_tgi_deployment_serves_every_adapter_with_zero_unavailability():
    spec = make_spec(serving={"replicas": 2})
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    deployment = builders.serving_deployment(BODY, spec, CONFIG, decision.serving, where)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    template = deployment["spec"]["template"]
    assert (
        template["metadata"]["annotations"][builders.ANNOTATION_REVISION]
        == decision.serving.revision
    )
    container = template["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    adapters = dict(pair.split("=", 1) for pair in env["LORA_ADAPTERS"].split(","))
    assert set(adapters) == {"binary", "generation"}
    assert all(p.startswith("/workspace/artifacts/ml/support/train/") for p in adapters.values())
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        >= 900
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert {"name": "shm", "emptyDir": {"medium": "Memory"}} in template["spec"]["volumes"]
    assert container["args"][:2] == ["--model-id", "/models/models/smollm2"]


def test_vllm_deployment_reads_lora_modules_from_its_adapters_config_map():
    spec = make_spec(serving={"engine": "vllm"})
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    template = builders.serving_deployment(BODY, spec, CONFIG, decision.serving, where)["spec"][
        "template"
    ]
    container = template["spec"]["containers"][0]
    assert "--enable-lora" in container["args"] and "--lora-modules" not in container["args"]
    assert "--lora-modules $(cat /etc/mtd-adapters/lora-modules)" in container["command"][2]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "annotations" not in template["metadata"]  # a new adapter set keeps the pods
    cm = builders.adapters_config_map(BODY, spec, decision.serving, where)
    modules = cm["data"]["lora-modules"].split(" ")
    assert {m.split("=")[0].rsplit("-", 1)[0] for m in modules} == {"binary", "generation"}
    assert {m.split("=", 1)[1] for m in modules} == {
        where.artifact(p) for p in decision.serving.adapters.values()
    }


@pytest.mark.parametrize(
    ("training", "compositions", "rank", "flag"),
    [
        ({"lora": {"rank": 8}}, [], 8, 8),
        ({"lora": {"rank": 12}}, [], 12, 16),  # vLLM accepts only 8, 16, 32, ...
        (
            {"method": "cgcLora", "lora": {"rank": 8},
             "cgcLora": {"commonExperts": 2, "specificExperts": 3, "expertRank": 4}},
            [], 20, 32,
        ),
        ({"lora": {"rank": 16}}, [{"merge": "cat", "calibration": 4}], 36, 64),
        ({"lora": {"rank": 16}}, [{"merge": "linear", "calibration": 4}], 20, 32),
        ({"lora": {"rank": 16}}, [{"merge": "ties"}], 16, 16),
    ],
)  # fmt: skip
def test_vllm_max_lora_rank_fits_every_served_adapter(training, compositions, rank, flag):
    entries = [
        {
            "name": f"c{i}",
            "tasks": ["a", "g"],
            "merge": c["merge"],
            "instruction": "Do both.",
            **({"calibration": {"data": "c.jsonl", "rank": c["calibration"]}}
               if "calibration" in c else {}),
        }
        for i, c in enumerate(compositions)
    ]  # fmt: skip
    spec = make_spec(serving={"engine": "vllm"}, training=training, compositions=entries)
    assert spec.max_served_rank() == rank
    assert builders.vllm_max_lora_rank(spec) == flag


def test_vllm_refuses_adapters_above_its_largest_rank():
    with pytest.raises(ValueError, match="rank at most 512, but an adapter here has rank 1024"):
        make_spec(serving={"engine": "vllm"}, training={"lora": {"rank": 1024}})
    make_spec(serving={"engine": "tgi"}, training={"lora": {"rank": 1024}})


def test_a_new_adapter_set_is_a_new_revision():
    one = finished_decision(make_spec())
    two = finished_decision(
        make_spec(
            tasks=[
                task("a", labels=["x", "y"]),
                task("g", "generation"),
                task("b", labels=["p", "q"]),
            ]
        )
    )
    assert one.serving.revision != two.serving.revision


def test_config_from_environment():
    config = load_config(
        {
            "MTD_NAMESPACES": "a, b",
            "MTD_NODE_SELECTOR": '{"gpu": "h100"}',
            "MTD_TRAINER_GPUS": "4",
        }
    )
    assert config.namespaces == ["a", "b"] and config.node_selector == {"gpu": "h100"}
    assert config.trainer_gpus == 4
    with pytest.raises(ValueError, match="MTD_TRAINER_GPUS"):
        load_config({"MTD_TRAINER_GPUS": "-1"})
    with pytest.raises(ValueError, match="MTD_TOLERATIONS"):
        load_config({"MTD_TOLERATIONS": "not json"})
