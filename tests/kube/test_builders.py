"""Pure manifest builders: names, Jobs, the serving Deployment for TGI and vLLM."""

from __future__ import annotations

import json
import re

import pytest

from mtd_operator.api.spec import MultiTaskDeploymentSpec
from mtd_operator.config import OperatorConfig, load_config
from mtd_operator.core.planner import plan
from mtd_operator.core.reconcile import reconcile
from mtd_operator.core.render import render_step
from mtd_operator.core.steps import pipeline_steps
from mtd_operator.engines import VLLM
from mtd_operator.engines.vllm import max_lora_rank
from mtd_operator.kube import builders
from tests.core.specs import task
from tests.core.test_compositions import composition_profiles
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
    assert builders.base_model_path("hf://org/name", CONFIG) == "/workspace/models/hf/org/name"
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
    assert json.loads(cm["data"]["config.json"]) == rendered.model_dump(mode="json")
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
    published_owner = json.loads(env["MTD_OWNER_REFERENCE"])
    assert published_owner["name"] == "support"
    # The operator's children block their owner's foreground deletion; what trainer pods
    # publish does not: that needs update on multitaskdeployments/finalizers under
    # OwnerReferencesPermissionEnforcement, which the trainer's Role lacks.
    assert job["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is True
    assert published_owner["blockOwnerDeletion"] is False


def finished_decision(spec):
    result, steps, _, _ = steps_and_render(spec)
    from mtd_operator.core.reconcile import StepState

    observed = {s.key: StepState("Succeeded", result={"tasks": {}}) for s in steps}
    return reconcile(spec, result, observed, None, now="2026-01-01T00:00:00Z")


def test_tgi_deployment_serves_every_adapter_with_zero_unavailability():
    spec = make_spec(serving={"engine": "tgi", "replicas": 2})
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    deployment = builders.serving_deployment(
        builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
    )
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
    assert template["spec"]["automountServiceAccountToken"] is False  # it calls no API
    assert container["args"][:2] == ["--model-id", "/models/models/smollm2"]
    # a context the GPU's KV cache fits (serving.maxModelLength), prompts one token less
    args = container["args"]
    assert args[args.index("--max-total-tokens") + 1] == "4096"
    assert args[args.index("--max-input-tokens") + 1] == "4095"


def test_vllm_deployment_reads_lora_modules_from_its_adapters_config_map():
    spec = make_spec(serving={"engine": "vllm"})
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, CONFIG, "ml", "support")
    template = builders.serving_deployment(
        builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
    )["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert "--enable-lora" in container["args"] and "--lora-modules" not in container["args"]
    assert container["command"][:2] == ["/bin/sh", "-c"] and container["command"][3] == "vllm"
    assert "--lora-modules $(cat /etc/mtd-adapters/lora-modules)" in container["command"][2]
    # the model is `vllm serve`'s first positional argument (`--model` is deprecated)
    args = container["args"]
    assert args[:3] == ["/models/models/smollm2", "--port", "8080"] and "--model" not in args
    assert args[args.index("--max-model-len") + 1] == "4096"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert "annotations" not in template["metadata"]  # a new adapter set keeps the pods
    cm = builders.adapters_config_map(
        builders.ServingInputs(BODY, spec, CONFIG, decision.serving, where)
    )
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
    assert spec.max_served_rank() == rank == VLLM.max_served_rank(spec)
    assert max_lora_rank(VLLM.max_served_rank(spec)) == flag


def test_vllm_refuses_adapters_above_its_largest_rank():
    with pytest.raises(ValueError, match="rank at most 512, but an adapter here has rank 1024"):
        make_spec(serving={"engine": "vllm"}, training={"lora": {"rank": 1024}})
    # no adapter is served under method full, so no rank rule applies
    make_spec(
        serving={"engine": "vllm"},
        training={"method": "full", "lora": {"rank": 1024}},
        filtering={"strategy": "none"},
    )


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


def _compositions(merge: str, calibration: int | None) -> list[dict]:
    entry = {"name": "c0", "tasks": ["a", "g"], "merge": merge, "instruction": "Do both."}
    if calibration:
        entry["calibration"] = {"data": "c.jsonl", "rank": calibration}
    return [entry]


@pytest.mark.parametrize(
    ("training", "compositions", "rank"),
    [
        ({"lora": {"rank": 16}}, [], 16),
        ({"lora": {"rank": 8}}, [], 16),  # padded up: TGI's kernels start at 16
        ({"lora": {"rank": 16}}, _compositions("cat", 4), 64),  # 36 → 64 (no 48 kernel)
        ({"lora": {"rank": 4}}, _compositions("cat", 4), 16),  # 4 + 4 + 4: padding stripped
        ({"lora": {"rank": 16}}, _compositions("linear", None), 16),
    ],
)
def test_tgi_serves_every_adapter_at_a_kernel_rank(training, compositions, rank):
    spec = make_spec(training=training, compositions=compositions, serving={"engine": "tgi"})
    assert spec.serving.engine == "tgi"
    assert spec.max_served_rank() == rank
    assert spec.padded_ranks() == [16, 32, 64, 128]
    ranks = [spec.served_rank(r) for _, r in spec.natural_ranks()]
    assert all(r in (16, 32, 64, 128) for r in ranks)


def test_tgi_rank_above_128_is_a_spec_error_naming_the_field():
    with pytest.raises(ValueError, match=r"compositions\[0\]: gives an adapter of rank 132"):
        make_spec(
            training={"lora": {"rank": 64}},
            compositions=_compositions("cat", 4),
            serving={"engine": "tgi"},
        )
    with pytest.raises(ValueError, match=r"training\.lora\.rank: gives an adapter of rank 256"):
        make_spec(training={"lora": {"rank": 256}}, serving={"engine": "tgi"})
    # vLLM's rule stays: up to 512
    make_spec(training={"lora": {"rank": 256}}, serving={"engine": "vllm"})


def test_tgi_padding_reaches_the_trainer_configs_and_hashes():
    tgi = make_spec(
        training={"lora": {"rank": 4}},
        compositions=_compositions("cat", 4),
        serving={"engine": "tgi"},
    )
    vllm = make_spec(
        training={"lora": {"rank": 4}},
        compositions=_compositions("cat", 4),
        serving={"engine": "vllm"},
    )
    plans = {
        name: plan(s, profiles_of({"a": 10, "g": 10}), composition_profiles(s))
        for name, s in (("tgi", tgi), ("vllm", vllm))
    }
    assert plans["tgi"].hash != plans["vllm"].hash  # padded adapters are other artifacts
    where = builders.cluster_locations(tgi, CONFIG, "ml", "support")
    steps = pipeline_steps(plans["tgi"])
    by_key = {s.key: s for s in steps}
    for step in steps:
        if step.verb in ("train", "compose"):
            rendered = render_step(step, tgi, plans["tgi"], by_key, where, "support")
            assert rendered.served_ranks == [16, 32, 64, 128]
    steps = pipeline_steps(plans["vllm"])
    by_key = {s.key: s for s in steps}
    for step in steps:
        rendered = render_step(step, vllm, plans["vllm"], by_key, where, "support")
        assert getattr(rendered, "served_ranks", None) is None


TWO_GPUS = CONFIG.model_copy(update={"trainer_gpus": 2, "serving_gpus": 2})


def serving_pod(spec, config=TWO_GPUS):
    decision = finished_decision(spec)
    where = builders.cluster_locations(spec, config, "ml", "support")
    deployment = builders.serving_deployment(
        builders.ServingInputs(BODY, spec, config, decision.serving, where)
    )
    return deployment["spec"]["template"]["spec"]


def test_tgi_runs_as_its_image_needs_with_one_shard_per_gpu():
    tgi = make_spec(serving={"engine": "tgi"})
    pod = serving_pod(tgi)
    container = pod["containers"][0]
    # TGI's image cannot start rootless (TGI issue #3082): no forced uid by default
    assert "runAsNonRoot" not in pod["securityContext"]
    assert "runAsUser" not in pod["securityContext"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["args"][container["args"].index("--num-shard") + 1] == "2"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HF_HOME"].startswith(builders.CACHE_MOUNT) and "HOME" not in env
    one = serving_pod(tgi, CONFIG)["containers"][0]  # 1 GPU: no flag
    assert "--num-shard" not in one["args"]


def test_vllm_uses_every_gpu_and_has_a_writable_home():
    pod = serving_pod(make_spec(serving={"engine": "vllm"}))
    container = pod["containers"][0]
    assert container["args"][container["args"].index("--tensor-parallel-size") + 1] == "2"
    assert pod["securityContext"]["runAsNonRoot"] is True
    env = {e["name"]: e["value"] for e in container["env"]}
    writable = {
        m["mountPath"]
        for m in container["volumeMounts"]
        if not m.get("readOnly")
        and any(v["name"] == m["name"] and "emptyDir" in v for v in pod["volumes"])
    }
    for key in ("HOME", "XDG_CACHE_HOME", "HF_HOME", "VLLM_CACHE_ROOT"):
        assert any(env[key].startswith(path + "/") for path in writable), key


def test_engine_security_is_overridable_from_the_chart_values():
    config = TWO_GPUS.model_copy(
        update={"tgi_pod_security_context": {"runAsUser": 1000, "runAsNonRoot": True}}
    )
    pod = serving_pod(make_spec(serving={"engine": "tgi"}), config)
    assert pod["securityContext"] == {"runAsUser": 1000, "runAsNonRoot": True}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["HOME"].startswith(builders.CACHE_MOUNT)  # non-root: a writable home
    # vLLM's own override, and the other engine's is not applied to it
    vllm = {"runAsUser": 2000, "runAsNonRoot": True, "fsGroup": 2000}
    config = config.model_copy(update={"vllm_pod_security_context": vllm})
    assert serving_pod(make_spec(serving={"engine": "vllm"}), config)["securityContext"] == vllm


def test_training_jobs_launch_one_process_per_gpu_and_split_the_batch():
    spec = make_spec()
    result, steps, by_key, where = steps_and_render(spec)
    for step in steps:
        rendered = render_step(step, spec, result, by_key, where, "support")
        job, _ = builders.step_objects(BODY, spec, TWO_GPUS, step, rendered)
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        if step.verb == "train":
            assert command[command.index("--processes") + 1] == "2"
            assert rendered.hyperparameters.batch_is_global is True
        else:
            assert "--processes" not in command
    first = render_step(steps[0], spec, result, by_key, where, "support")
    one_gpu, _ = builders.step_objects(BODY, spec, CONFIG.model_copy(
        update={"trainer_gpus": 1}), steps[0], first)  # fmt: skip
    assert "--processes" not in one_gpu["spec"]["template"]["spec"]["containers"][0]["command"]


@pytest.mark.parametrize("claim", ["models.v2", "models-", "a" * 200, "Models"])
def test_model_volume_names_are_valid_whatever_the_claim(claim):
    spec = make_spec(baseModel={"uri": f"pvc://{claim}/smollm2"})
    result, steps, by_key, where = steps_and_render(spec)
    rendered = render_step(steps[0], spec, result, by_key, where, "support")
    job, _ = builders.step_objects(BODY, spec, CONFIG, steps[0], rendered)
    pod = job["spec"]["template"]["spec"]
    names = [v["name"] for v in pod["volumes"]]
    assert all(re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", n) for n in names), names
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if
              "persistentVolumeClaim" in v}  # fmt: skip
    assert claim in claims
    assert pod["securityContext"]["fsGroupChangePolicy"] == "OnRootMismatch"
    assert builders.volume_name("model", claim) == builders.volume_name("model", claim)


def test_a_hub_model_is_downloaded_once_by_the_profile_job_and_read_offline_after():
    spec = make_spec(baseModel={"uri": "hf://org/gated-7b", "tokenSecret": {"name": "hf"}})
    copy = "/workspace/models/hf/org/gated-7b"
    job, _ = builders.profile_objects(BODY, spec, CONFIG)
    container = job["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[command.index("--download-model") + 1] == "hf://org/gated-7b"
    assert command[command.index("--model-dir") + 1] == copy
    env = {e["name"]: e for e in container["env"]}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    assert "HF_HUB_OFFLINE" not in env
    # every later pod reads the copy, offline
    result, steps, by_key, where = steps_and_render(spec)
    assert where.base_model == copy
    for step in steps:
        rendered = render_step(step, spec, result, by_key, where, "support")
        assert rendered.base_model == copy
        job, _ = builders.step_objects(BODY, spec, CONFIG, step, rendered)
        env = {
            e["name"]: e.get("value")
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env
    container = serving_pod(spec)["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["args"][0] == copy and env["HF_HUB_OFFLINE"] == "1"  # vLLM: positional
    # a token only for hub models
    with pytest.raises(ValueError, match="tokenSecret: only for hf://"):
        make_spec(baseModel={"uri": "/models/x", "tokenSecret": {"name": "hf"}})
    # a path model: no download step
    job, _ = builders.profile_objects(BODY, make_spec(), CONFIG)
    assert "--download-model" not in job["spec"]["template"]["spec"]["containers"][0]["command"]


@pytest.mark.parametrize(("engine", "rank"), [("tgi", 16), ("vllm", 4)])
def test_task_rows_show_the_served_rank(engine, rank):
    spec = make_spec(training={"lora": {"rank": 4}}, serving={"engine": engine})
    rows = finished_decision(spec).status.tasks
    assert {row.rank for row in rows} == {rank}


def test_a_multi_node_step_is_an_indexed_job_with_a_headless_service_and_torchrun_args():
    resources = {"nodes": 2, "gpusPerNode": 1, "cpu": "4", "memory": "32Gi"}
    spec = make_spec(training={"resources": resources, "batchSize": 8})
    result, steps, by_key, where = steps_and_render(spec)
    train = next(s for s in steps if s.verb == "train")
    rendered = render_step(train, spec, result, by_key, where, "support")
    job, _ = builders.step_objects(BODY, spec, CONFIG, train, rendered)
    service = builders.step_service(BODY, spec, train)
    name = job["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod = job["spec"]["template"]["spec"]
    assert service is not None and pod["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == job["spec"]["template"]["metadata"]["labels"]
    assert service["metadata"]["ownerReferences"] == job["metadata"]["ownerReferences"]
    assert service == builders.step_service(BODY, spec, train)  # deterministic
    command = pod["containers"][0]["command"]
    assert command[command.index("--nnodes") + 1] == "2"
    endpoint = f"{name}-0.{service['metadata']['name']}.ml.svc:{builders.RENDEZVOUS_PORT}"
    assert command[command.index("--rdzv-endpoint") + 1] == endpoint
    assert "--processes" not in command  # gpusPerNode 1 overrides the chart's 2
    resources = pod["containers"][0]["resources"]
    assert resources["requests"] == {"nvidia.com/gpu": "1", "cpu": "4", "memory": "32Gi"}
    assert resources["limits"] == {"nvidia.com/gpu": "1"}
    # every pod failure of an attempt is counted: the limit allows as many whole attempts
    assert job["spec"]["backoffLimit"] == CONFIG.job_backoff_limit * 2 + 1
    # evaluation stays one pod, without a Service
    other = next(s for s in steps if s.verb != "train")
    rendered = render_step(other, spec, result, by_key, where, "support")
    job, _ = builders.step_objects(BODY, spec, CONFIG, other, rendered)
    assert "completionMode" not in job["spec"] and builders.step_service(BODY, spec, other) is None
    # one node: an ordinary Job, no Service
    single = make_spec()
    plan_1, steps_1, by_key_1, where_1 = steps_and_render(single)
    train_1 = next(s for s in steps_1 if s.verb == "train")
    rendered = render_step(train_1, single, plan_1, by_key_1, where_1, "support")
    job, _ = builders.step_objects(BODY, single, CONFIG, train_1, rendered)
    assert "completionMode" not in job["spec"] and "--nnodes" not in str(job)
    assert builders.step_service(BODY, single, train_1) is None


def test_strategy_fsdp_reaches_every_training_config():
    spec = make_spec(training={"resources": {"strategy": "fsdp", "nodes": 2}})
    result, steps, by_key, where = steps_and_render(spec)
    trains = [s for s in steps if s.verb == "train"]
    assert trains and {s.role for s in trains} >= {"stage"}
    for step in trains:
        assert render_step(step, spec, result, by_key, where, "support").strategy == "fsdp"
    plain = make_spec()
    _, plain_steps, *_ = steps_and_render(plain)
    # placement is not content: the same steps (and artifacts) under either strategy
    assert [s.key for s in plain_steps] == [s.key for s in steps]


def test_training_resources_are_strict_and_errors_name_the_field():
    with pytest.raises(ValueError, match=r"training\.resources\.nodes: 4 nodes"):
        make_spec(training={"resources": {"nodes": 4}, "batchSize": 2})
    with pytest.raises(ValueError, match=r"(?s)training\.resources\.strategy.*'ddp' or 'fsdp'"):
        make_spec(training={"resources": {"strategy": "zero3"}})
    with pytest.raises(ValueError, match=r"training\.resources\.strategy: fsdp .* not cgcLora"):
        make_spec(training={"method": "cgcLora", "resources": {"strategy": "fsdp"}})
    with pytest.raises(ValueError, match="memory"):
        make_spec(training={"resources": {"memory": "lots"}})
    with pytest.raises(ValueError, match=r"gpusPerNode|gpus_per_node"):
        make_spec(training={"resources": {"gpusPerNode": "2"}})  # strict: no strings


@pytest.mark.parametrize(
    ("resources", "batch", "chart_gpus", "world"),
    [
        ({"nodes": 2, "gpusPerNode": 8}, 8, 1, 16),  # 2 nodes x 8 GPUs, 8 examples
        ({"nodes": 1}, 4, 8, 8),  # the chart's 8 GPUs, a batch of 4
    ],
)
def test_a_batch_smaller_than_its_processes_is_refused_naming_the_field(
    resources, batch, chart_gpus, world
):
    spec = make_spec(training={"resources": resources, "batchSize": batch})
    config = CONFIG.model_copy(update={"trainer_gpus": chart_gpus})
    (problem,) = builders.cluster_problems(spec, config, model_path=False)
    assert problem.startswith(f"spec.training.batchSize: {batch} is smaller than the {world} ")
    assert f"at least {world}" in problem
    # A batch that covers every GPU runs one process per GPU on each node.
    spec = make_spec(training={"resources": resources, "batchSize": world})
    assert builders.cluster_problems(spec, config, model_path=False) == []
    assert builders.trainer_processes(spec, config) == world // resources["nodes"]
