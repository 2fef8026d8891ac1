"""`helm lint` and `helm template` in every mode; what renders is what a cluster accepts."""

from __future__ import annotations

import base64
import re
import subprocess

import kubernetes_validate
import pytest
import yaml

from mtd_operator.config import OperatorConfig, load_config
from mtd_operator.kube.builders import model_path_problem

from .conftest import CHART, CHART_META, KUBE_VERSIONS, ROOT, oldest_kubernetes
from .scenarios import RELEASE_NAMESPACE, SCENARIOS
from .test_examples import errors as crd_errors

CRD_FILE = ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml"
APP_VERSION = CHART_META["appVersion"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_strict(run_helm, scenario):
    result = run_helm("lint", "--strict", str(CHART), values=SCENARIOS[scenario])
    assert "0 chart(s) failed" in result.stdout


def test_kube_versions_cover_the_declared_minimum_to_the_newest_schemas():
    # Native sidecar containers (evaluation Jobs) are on by default from 1.29.
    assert oldest_kubernetes() >= (1, 29)
    assert KUBE_VERSIONS[0] == f"1.{oldest_kubernetes()[1]}.0"
    assert KUBE_VERSIONS[-1] == kubernetes_validate.latest_version()


def test_helm_refuses_kubernetes_older_than_declared(run_helm):
    major, minor = oldest_kubernetes()
    older = run_helm(
        "template", "x", str(CHART), "--kube-version", f"{major}.{minor - 1}.9", check=False
    )
    assert older.returncode != 0 and "chart requires kubeVersion" in older.stderr
    run_helm("template", "x", str(CHART), "--kube-version", f"{major}.{minor}.0")


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_valid_kubernetes(render, scenario, kube_version):
    docs = render(scenario).docs
    assert docs
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{scenario}: {name}: {path}: {exc.message}")


def test_rendered_crd_is_the_repository_crd(render):
    crd = render("defaults").one("CustomResourceDefinition")
    expected = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    metadata = crd.pop("metadata")
    expected_metadata = expected.pop("metadata")
    assert crd == expected, "the chart must render crds/ unchanged (files/ links to it)"
    assert metadata["name"] == expected_metadata["name"]
    assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crd_switches(render):
    assert not render("namespaced").all("CustomResourceDefinition")
    crd = render("cluster-wide-trainer-namespaces").one("CustomResourceDefinition")
    assert "annotations" not in crd["metadata"], "crds.keep: false must drop the keep policy"


def operator_pod(rendered):
    return rendered.one("Deployment")["spec"]["template"]["spec"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_operator_deployment_shape_and_security(render, scenario):
    rendered = render(scenario)
    deployment = rendered.one("Deployment")
    assert deployment["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = operator_pod(rendered)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = rendered.operator_container()
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert "privileged" not in security
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_probe_ports_and_metrics_service_line_up(render, scenario):
    rendered = render(scenario)
    container = rendered.operator_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness = [a for a in container["args"] if a.startswith("--liveness=")]
    assert liveness == [f"--liveness=http://0.0.0.0:{ports['liveness']}/healthz"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe == {"path": "/healthz", "port": "liveness"}
    assert rendered.operator_env()["MTD_METRICS_PORT"] == str(ports["metrics"])
    services = rendered.all("Service")
    if SCENARIOS[scenario].get("metrics", {}).get("service", {}).get("enabled", True):
        (service,) = services
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"
        labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
    else:
        assert not services


def test_watch_mode_arguments(render):
    # No `command`: the image's entrypoint (kopf run --standalone -m ...) takes the args.
    assert "command" not in render("defaults").operator_container()
    assert render("defaults").operator_container()["args"][0] == "--all-namespaces"
    args = render("namespaced").operator_container()["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args
    assert "--debug" in args


# What only the chart can give the operator: a secret to derive engine keys from, and the
# namespace it runs in (the serving NetworkPolicy admits its pods from there).
CHART_ONLY = {"engine_key_file", "operator_namespace"}


def test_default_env_is_the_operator_default_config(render):
    """Without values the chart changes nothing the operator would not do on its own."""
    config = load_config(render("defaults").operator_env())
    assert config.model_dump(exclude=CHART_ONLY) == OperatorConfig().model_dump(exclude=CHART_ONLY)


def test_the_operator_derives_engine_keys_from_a_secret_only_it_mounts(render):
    rendered = render("defaults")
    env = rendered.operator_env()
    (secret,) = [s for s in rendered.all("Secret") if s["metadata"]["name"].endswith("engine-key")]
    assert len(base64.b64decode(secret["data"]["key"])) >= 32  # read_master's minimum
    pod = operator_pod(rendered)
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    (mount,) = [
        m for m in rendered.operator_container()["volumeMounts"] if m["name"] == volume["name"]
    ]
    assert mount["readOnly"] and env["MTD_ENGINE_KEY_FILE"] == f"{mount['mountPath']}/key"
    # the file is readable by the operator's uid through its fsGroup, by no one else
    assert volume["secret"]["defaultMode"] == 0o440 and pod["securityContext"]["fsGroup"]
    assert env["MTD_OPERATOR_NAMESPACE"] == RELEASE_NAMESPACE
    labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "operator"  # the NetworkPolicy's peer


def test_env_sets_every_config_field(render):
    names = set(render("defaults").operator_env())
    assert names == {f"MTD_{field.upper()}" for field in OperatorConfig.model_fields}


def test_env_reflects_values(render):
    values = SCENARIOS["namespaced"]
    config = load_config(render("namespaced").operator_env())
    trainer, serving, workloads = values["trainer"], values["serving"], values["workloads"]
    assert config.namespaces == ["team-a", "team-b"]
    assert config.trainer_image == "registry.example.com/ml/mto-trainer:1.2.3-cu128"
    assert config.tgi_image == "registry.example.com/ml/tgi:3.3.6-patched"
    assert config.vllm_image == "registry.example.com/ml/vllm:v0.11.0"
    assert config.gpu_resource == workloads["gpuResource"]
    assert config.trainer_gpus == trainer["gpus"]
    assert config.serving_gpus == serving["gpus"]
    assert config.node_selector == workloads["nodeSelector"]
    assert config.tolerations == workloads["tolerations"]
    assert config.image_pull_secrets == workloads["imagePullSecrets"]
    assert config.trainer_service_account == "mtd-trainer"
    assert config.workspace_claim == "ml-workspace"
    assert config.workspace_mount_path == "/mnt/workspace"
    assert config.job_backoff_limit == 5
    assert config.metrics_port == 9090


def test_image_tags_default_to_app_version(render):
    rendered = render("defaults")
    assert rendered.operator_container()["image"].endswith(f":{APP_VERSION}")
    assert rendered.operator_env()["MTD_TRAINER_IMAGE"].endswith(f":{APP_VERSION}")
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert f'version = "{APP_VERSION}"' in pyproject, "appVersion must be the project version"
    custom = render("namespaced")
    assert custom.operator_container()["image"] == "registry.example.com/ml/mto-operator:1.2.3"
    assert operator_pod(custom)["imagePullSecrets"] == [{"name": "registry-creds"}]


def test_operator_pod_scheduling_values(render):
    pod = operator_pod(render("namespaced"))
    values = SCENARIOS["namespaced"]
    assert pod["nodeSelector"] == values["nodeSelector"]
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == values["affinity"]
    for key in ("nodeSelector", "tolerations", "affinity", "imagePullSecrets"):
        assert key not in operator_pod(render("defaults")), key


@pytest.mark.parametrize(
    "setting, field",
    [
        ("bogus=1", "bogus"),
        ("image.bogus=1", "bogus"),
        ("trainer.serviceAccount.bogus=1", "bogus"),
        ("metrics.service.bogus=1", "bogus"),
        ("crds.enabled=maybe", "enabled"),
        ("watchNamespaces[0]=Not_A_Namespace", "watchNamespaces"),
        ("workspace.mountPath=relative/path", "mountPath"),
        ("trainer.gpus=-1", "gpus"),
        ("logLevel=loud", "logLevel"),
    ],
)
def test_schema_rejects_unknown_and_malformed_values(run_helm, setting, field):
    result = run_helm("template", "x", str(CHART), "--set", setting, check=False)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert "schema" in result.stderr and field in result.stderr, result.stderr


def test_trainer_namespaces_conflict_with_watch_namespaces(run_helm):
    result = run_helm(
        "template",
        "x",
        str(CHART),
        values={"watchNamespaces": ["a"], "trainer": {"namespaces": ["b"]}},
        check=False,
    )
    assert result.returncode != 0
    assert "trainer.namespaces must be empty when watchNamespaces is set" in result.stderr


def test_existing_service_account_needs_a_name(run_helm):
    result = run_helm(
        "template", "x", str(CHART), values={"serviceAccount": {"create": False}}, check=False
    )
    assert result.returncode != 0
    assert "serviceAccount.name is required" in result.stderr


def notes_commands(text: str) -> list[str]:
    """The commands NOTES prints (indented lines), continuation lines joined."""
    joined = text.replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.startswith("  ")]


def applied_by_notes(text: str) -> tuple[str, dict]:
    """The namespace and the resource NOTES' `... | kubectl -n NS apply -f -` applies,
    made by running the producing command in the repository root, as a user would."""
    (pipeline,) = [c for c in notes_commands(text) if " apply -f -" in c]
    producer, _, consumer = pipeline.rpartition(" | ")
    namespace = re.fullmatch(r"kubectl -n (\S+) apply -f -", consumer)[1]
    result = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {producer}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return namespace, yaml.safe_load(result.stdout)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_notes_apply_a_resource_the_operator_accepts(render, notes, scenario):
    """What NOTES tells users to apply passes the CRD and the operator's own check of the
    base model path under this install's workspace settings."""
    text = notes(scenario)
    namespace, resource = applied_by_notes(text)
    assert crd_errors(resource) == {}
    config = load_config(render(scenario).operator_env())
    assert model_path_problem(resource["spec"]["baseModel"]["uri"], config) is None
    name = resource["metadata"]["name"]
    commands = notes_commands(text)
    assert f"kubectl -n {namespace} get mtd" in commands
    assert f"kubectl -n {namespace} wait --for=condition=Ready mtd/{name} --timeout=2h" in (
        commands
    )
    assert f"kubectl -n {namespace} port-forward svc/{name}-gateway 8000:80" in commands
    expected = SCENARIOS[scenario].get("watchNamespaces") or SCENARIOS[scenario].get(
        "trainer", {}
    ).get("namespaces", ["NAMESPACE"])
    assert namespace == expected[0]


def test_values_file_is_what_helm_shows(run_helm):
    result = run_helm("show", "values", str(CHART))
    assert result.stdout.strip() == (CHART / "values.yaml").read_text(encoding="utf-8").strip()
