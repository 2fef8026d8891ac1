"""`serving.router: inferencePool` (issue #30): the objects `mtd manifests` renders for the
Gateway API Inference Extension validate against the pinned CRDs' schemas
(tests/fixtures/inference-crds/), select the vLLM pods, and send each task's name to the
adapter that serves it."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from mtd_operator.kube.builders import served_model_id
from mtd_operator.kube.manifests import operator_config
from mtd_operator.specfile import load_and_profile
from tests.kube.test_manifests import EXAMPLES, manifests
from tests.support.examples import cluster_example

CRDS = Path(__file__).resolve().parents[1] / "fixtures" / "inference-crds"
ROUTER = ["--set", "serving.router=inferencePool", "--set", "serving.endpointPicker=epp:9002"]


def schema_of(api_version: str, kind: str) -> dict:
    """The openAPIV3Schema of `kind` at `api_version` in the pinned CRDs."""
    group, version = api_version.split("/")
    for path in CRDS.glob("*.yaml"):
        crd = yaml.safe_load(path.read_text())
        if crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind:
            (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
            assert served["served"], f"{kind} {version} is not served"
            return served["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no pinned CRD for {kind} in {api_version}")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_rendered_objects_validate_against_the_pinned_crds(example, capsys, tmp_path):
    example = cluster_example(example, tmp_path / example.parent.name)
    objects = manifests(capsys, str(example), *ROUTER)
    kinds = [o["kind"] for o in objects]
    assert kinds.count("InferencePool") == 1 and kinds.count("InferenceModelRewrite") == 1
    for obj in objects:
        if obj["kind"] in ("InferencePool", "InferenceModelRewrite"):
            jsonschema.validate(obj, schema_of(obj["apiVersion"], obj["kind"]))
    # The pool's selector is exactly the serving pods' labels; no task gateway is rendered.
    (pool,) = [o for o in objects if o["kind"] == "InferencePool"]
    (serving,) = [o for o in objects if o["kind"] == "Deployment"]
    labels = serving["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pool["spec"]["targetPorts"] == [
        {
            "number": serving["spec"]["template"]["spec"]["containers"][0]["ports"][0][
                "containerPort"
            ]
        }
    ]
    assert pool["spec"]["endpointPickerRef"] == {"name": "epp", "port": {"number": 9002}}
    assert not any("gateway" in o["metadata"]["name"] for o in objects if o["kind"] == "Service")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.parent.name)
def test_each_task_name_is_rewritten_to_the_adapter_that_serves_it(example, capsys, tmp_path):
    example = cluster_example(example, tmp_path / example.parent.name)
    objects = manifests(capsys, str(example), *ROUTER)
    (rewrite,) = [o for o in objects if o["kind"] == "InferenceModelRewrite"]
    (pool,) = [o for o in objects if o["kind"] == "InferencePool"]
    assert rewrite["spec"]["poolRef"] == {"name": pool["metadata"]["name"]}
    (adapters,) = [o for o in objects if o["kind"] == "ConfigMap" and "lora-modules" in o["data"]]
    served = {m.split("=", 1)[0] for m in adapters["data"]["lora-modules"].split()}
    resource, _, _ = load_and_profile(example)
    base = served_model_id(resource.spec, operator_config({}, ROUTER[1::2]))
    rules = {
        r["matches"][0]["model"]["value"]: r["targets"][0]["modelRewrite"]
        for r in rewrite["spec"]["rules"]
    }
    names = [t.name for t in resource.spec.tasks] + [c.name for c in resource.spec.compositions]
    assert sorted(rules) == sorted(names)
    assert set(rules.values()) <= served | {base}


def test_tgi_resources_keep_the_task_gateway(capsys, tmp_path):
    example = cluster_example(EXAMPLES[0], tmp_path / "minimal")
    doc = yaml.safe_load(example.read_text())
    doc["spec"].setdefault("serving", {})["engine"] = "tgi"
    example.write_text(yaml.safe_dump(doc))
    objects = manifests(capsys, str(example), *ROUTER)
    assert "InferencePool" not in {o["kind"] for o in objects}
    assert any("gateway" in o["metadata"]["name"] for o in objects if o["kind"] == "Deployment")


def test_a_bad_endpoint_picker_is_refused_naming_the_setting(capsys):
    assert main_exit(["--set", "serving.endpointPicker=EPP"]) == 2
    assert "serving.endpointPicker" in capsys.readouterr().err


def main_exit(args: list[str]) -> int:
    from mtd_operator.cli import main

    return main(["manifests", str(EXAMPLES[0]), *args])
