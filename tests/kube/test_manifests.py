"""`mtd manifests`: the whole pipeline's objects, from the operator's own builders."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mtd_operator.cli import main
from mtd_operator.core.planner import plan
from mtd_operator.core.render import evaluable
from mtd_operator.core.steps import pipeline_steps
from mtd_operator.kube.builders import served_model_id
from mtd_operator.kube.manifests import operator_config
from mtd_operator.labels import ANNOTATION_STEP
from mtd_operator.specfile import load_and_profile
from tests.support.examples import cluster_example
from tests.support.kube_versions import KUBE_VERSIONS

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [
    ROOT / "examples" / "minimal" / "mtd.yaml",
    ROOT / "examples" / "quickstart" / "mtd.yaml",
]


def manifests(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["manifests", *args]) == 0
    return list(yaml.safe_load_all(capsys.readouterr().out))


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_the_examples_local_model_path_is_refused_on_a_cluster(example, capsys):
    """`../../.cache/...` is right for `mtd run` (relative to the spec file) but leaves the
    workspace volume on a cluster: refused naming the field, nothing printed."""
    assert main(["manifests", str(example)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "spec.baseModel.uri: '../../.cache/models/smollm2-135m' leaves the workspace" in (
        captured.err
    )


def check_scoring_engine(pod: dict, config: dict, spec) -> None:
    trainer, (engine,) = pod["containers"][0], pod["initContainers"]
    assert "resources" not in trainer or not trainer["resources"]
    assert engine["name"] == "engine" and engine["restartPolicy"] == "Always"  # native sidecar
    assert engine["image"].startswith("vllm/vllm-openai:v")
    assert engine["resources"]["limits"] == {"nvidia.com/gpu": "3"}
    args = engine["command"] + engine["args"]
    assert args[:3] == ["vllm", "serve", config["engine"]["base_model"]]
    assert args[args.index("--host") + 1] == "127.0.0.1"  # the pod's loopback only
    assert config["engine"]["url"] == f"http://127.0.0.1:{args[args.index('--port') + 1]}"
    # Every task's adapter is one the engine names at start, pointing at the step's folder.
    modules = dict(m.split("=", 1) for m in args[args.index("--lora-modules") + 1 :])
    for task in config["tasks"]:
        name = config["engine"]["adapters"][task["name"]]
        adapter = config["task_adapters"].get(task["name"], config["adapter"])
        assert modules[name] == adapter
    assert {m["mountPath"] for m in engine["volumeMounts"]} >= {"/workspace", "/cache", "/tmp"}
    assert spec.serving.engine == "vllm"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_every_step_has_its_job_and_config_and_serving_comes_last(
    example, capsys, monkeypatch, tmp_path
):
    monkeypatch.setenv("MTD_TRAINER_IMAGE", "registry.example/trainer:2")
    example = cluster_example(example, tmp_path / example.parent.name)
    objects = manifests(capsys, str(example), "--set", "trainer.gpus=2", "--set", "serving.gpus=3")
    resource, profiles, compositions = load_and_profile(example)
    the_plan = plan(resource.spec, profiles, compositions)
    steps = pipeline_steps(the_plan)
    runnable = {s.key for s in steps if evaluable(s, resource.spec, the_plan)}

    every_job = [o for o in objects if o["kind"] == "Job"]
    # vLLM loads new adapters into running pods: one Job verifies them first (issue #29)
    (verify,) = [j for j in every_job if j["metadata"]["labels"]["multitask.dev/role"] == "verify"]
    assert verify["spec"]["template"]["spec"]["containers"][0]["command"][:2] == ["mtd", "verify"]
    jobs = [j for j in every_job if j is not verify]
    maps = {o["metadata"]["name"] for o in objects if o["kind"] == "ConfigMap"}
    name = resource.metadata.name
    # each Job with its ConfigMap, plus the gateway's catalogue and vLLM's adapter list
    assert {j["metadata"]["name"] for j in jobs} | {f"{name}-catalogue", f"{name}-adapters"} == (
        maps
    )
    profile, *step_jobs = jobs
    assert profile["spec"]["template"]["spec"]["containers"][0]["command"][:2] == [
        "mtd",
        "profile",
    ]
    assert {j["metadata"]["annotations"][ANNOTATION_STEP] for j in step_jobs} == runnable
    assert len(step_jobs) == len(runnable)
    for job in jobs:
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "registry.example/trainer:2"  # from the environment
    configs = {
        o["metadata"]["name"]: json.loads(o["data"]["config.json"])
        for o in objects
        if o["kind"] == "ConfigMap" and "config.json" in o.get("data", {})
    }
    for job in step_jobs:
        pod = job["spec"]["template"]["spec"]
        trainer = pod["containers"][0]
        if configs[job["metadata"]["name"]]["kind"] != "evaluate":
            assert trainer["resources"]["limits"] == {"nvidia.com/gpu": "2"}
            assert "initContainers" not in pod
            continue
        # An evaluation asks the serving engine itself, beside it in its pod; the engine
        # holds the serving GPUs, the trainer only sends requests.
        check_scoring_engine(pod, configs[job["metadata"]["name"]], resource.spec)

    serving = objects[-8:]
    adapters, deployment, _service, policy, verify_job, catalogue, gateway, gateway_service = (
        serving
    )
    assert [o["kind"] for o in serving] == [
        "ConfigMap", "Deployment", "Service", "NetworkPolicy", "Job", "ConfigMap", "Deployment",
        "Service",
    ]  # fmt: skip
    assert verify_job is verify
    assert policy["metadata"]["name"] == f"{name}-serving"
    assert adapters["metadata"]["name"] == f"{name}-adapters"
    assert gateway["metadata"]["name"] == f"{name}-gateway"
    assert gateway_service["metadata"]["name"] == f"{name}-gateway"
    routed = {t["name"]: t.get("adapter") for t in json.loads(
        catalogue["data"]["catalogue.json"])["tasks"]}  # fmt: skip
    assert set(routed) == {t.name for t in resource.spec.tasks} | {
        c.name for c in resource.spec.compositions
    }
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    assert server["resources"]["limits"] == {"nvidia.com/gpu": "3"}
    # both examples: vllm, lora; the adapters are in the ConfigMap, named name-<hash>
    assert resource.spec.serving.engine == "vllm"
    args = server["args"]
    assert args[0] == served_model_id(resource.spec, operator_config({}, []))  # positional
    assert args[args.index("--max-model-len") + 1] == str(resource.spec.serving.max_model_length)
    assert args[args.index("--tensor-parallel-size") + 1] == "3"
    modules = adapters["data"]["lora-modules"].split(" ")
    served = {module.split("=", 1)[0].rsplit("-", 1)[0] for module in modules}
    # every task qualified: each group's adapter, and each composition's own
    assert served == {g.name for g in the_plan.groups} | {
        c.name for c in resource.spec.compositions
    }

    for version in KUBE_VERSIONS:  # the chart's oldest minor to the newest schemas
        for obj in objects:
            kubernetes_validate.validate(obj, version, strict=True)


def test_set_keys_and_values_are_checked() -> None:
    with pytest.raises(ValueError, match=r"KEY one of trainer.image, trainer.gpus"):
        operator_config({}, ["trainer.gpu=2"])
    with pytest.raises(ValueError, match=r"--set trainer.gpus: .*greater than or equal to 0"):
        operator_config({}, ["trainer.gpus=-1"])
    config = operator_config(
        {"MTD_WORKSPACE_CLAIM": "from-env", "MTD_TRAINER_GPUS": "4"},
        ["trainer.gpus=0", "workloads.imagePullSecrets=a,b"],
    )
    assert (config.workspace_claim, config.trainer_gpus) == ("from-env", 0)
    assert config.image_pull_secrets == ["a", "b"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("workspace.mountPath=", "an absolute, normalised path"),
        ("workspace.mountPath=/workspace/../etc", "an absolute, normalised path"),
        ("trainer.image=ghcr.io/x/trainer:1\nevil: true", "is not an image reference"),
        ("trainer.image=two words", "is not an image reference"),
        ('workloads.tolerations=[{"key": "a b", "operator": "Exists"}]', "is not a label key"),
        ('workloads.tolerations=[{"key": "k", "operator": "Always"}]', "allowed: Exists, Equal"),
        ('workloads.tolerations=[{"key": "k", "effect": "Evict"}]', "allowed: NoSchedule"),
        ('workloads.tolerations=[{"key": "k", "colour": "red"}]', "unknown field(s) colour"),
    ],
)
def test_set_values_a_cluster_would_refuse_are_refused_naming_the_setting(setting, message):
    key = setting.split("=", 1)[0]
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        operator_config({}, [setting])
    assert f"--set {key}" in str(caught.value)


def test_evaluations_score_in_process_where_native_sidecars_are_not_wanted(
    capsys, tmp_path
) -> None:
    """serving.scoreThroughEngine false (clusters before Kubernetes 1.29): no engine
    beside an evaluation, no engine section in its config, the trainer holds the GPUs."""
    spec = EXAMPLES[0]
    cluster_spec = cluster_example(spec, tmp_path / "spec")
    assert main(["manifests", str(cluster_spec), "--set", "serving.scoreThroughEngine=false"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    configs = {
        o["metadata"]["name"]: json.loads(o["data"]["config.json"])
        for o in objects
        if o["kind"] == "ConfigMap" and "config.json" in o["data"]
    }
    evaluations = [
        o
        for o in objects
        if o["kind"] == "Job" and configs.get(o["metadata"]["name"], {}).get("kind") == "evaluate"
    ]
    assert evaluations
    for job in evaluations:
        pod = job["spec"]["template"]["spec"]
        assert "initContainers" not in pod
        assert configs[job["metadata"]["name"]].get("engine") is None
        assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "1"}


def test_a_bad_set_is_exit_2_naming_the_key(capsys) -> None:
    assert main(["manifests", str(EXAMPLES[0]), "--set", "nope=1"]) == 2
    assert "--set 'nope=1': expected KEY=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("engine", ["tgi", "vllm"])
def test_two_gpus_each_are_used_as_an_engine_and_the_trainer_need_them(engine, capsys, tmp_path):
    """Issue #14's reading of `mtd manifests`: with 2 trainer and 2 serving GPUs, training
    Jobs launch 2 processes; TGI runs as its image needs with --num-shard 2; vLLM gets
    --tensor-parallel-size 2 and a writable HOME on a volume."""
    folder = tmp_path / "minimal"
    shutil.copytree(ROOT / "examples" / "minimal", folder)
    doc = yaml.safe_load((folder / "mtd.yaml").read_text(encoding="utf-8"))
    doc["spec"]["serving"]["engine"] = engine
    doc["spec"]["baseModel"] = {"uri": "hf://HuggingFaceTB/SmolLM2-135M-Instruct"}
    (folder / "mtd.yaml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    objects = manifests(
        capsys, str(folder / "mtd.yaml"), "--set", "trainer.gpus=2", "--set", "serving.gpus=2"
    )
    training = [
        o for o in objects
        if o["kind"] == "Job" and "train" in o["spec"]["template"]["spec"]["containers"][0][
            "command"]
    ]  # fmt: skip
    assert training
    for job in training:
        command = job["spec"]["template"]["spec"]["containers"][0]["command"]
        assert command[command.index("--processes") + 1] == "2"
    server = next(
        o for o in objects
        if o["kind"] == "Deployment" and o["metadata"]["name"].endswith("-serving")
    )  # fmt: skip
    pod = server["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    if engine == "tgi":
        assert "runAsNonRoot" not in pod["securityContext"]
        assert "runAsUser" not in pod["securityContext"]
        assert container["args"][container["args"].index("--num-shard") + 1] == "2"
    else:
        args = container["args"]
        assert args[args.index("--tensor-parallel-size") + 1] == "2"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert any(env["HOME"].startswith(path) for path in mounts)
        assert pod["securityContext"].get("runAsNonRoot") is True
