"""Every name a MultiTaskDeployment may have gives children the API server accepts.

The resource's name is a DNS-1123 subdomain (253 characters, dots, a leading digit); each
child kind has a stricter rule (kube/names.py cites them). `mtd manifests` renders every
object the operator creates, so its output is checked against those rules here, for
names of 1, 27, 63 and 253 characters, with a leading digit and with dots, on a step of
2 nodes × 8 GPUs (whose pods' hostnames are `<job>-<index>`).
"""

from __future__ import annotations

import pytest
import yaml

from mtd_operator.cli import main
from mtd_operator.kube import names
from tests.support.examples import cluster_example

from .test_manifests import ROOT

QUICKSTART = ROOT / "examples" / "quickstart" / "mtd.yaml"
SERVICE_KINDS = {"Service"}

NAMES = {
    "1": "q",
    "27": "customer-support-chatbot-27",
    "63": "m" * 40 + "-" + "n" * 22,
    "253": ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61]),
    "leading-digit": "1st-model",
    "dots": "team.model",
    "digit-and-dots": "9.team.model-v2",
}


def test_the_names_are_the_lengths_they_claim():
    assert {len(n) for k, n in NAMES.items() if k.isdigit()} == {1, 27, 63, 253}


def spec_named(name: str, folder) -> str:
    spec = yaml.safe_load(cluster_example(QUICKSTART, folder).read_text(encoding="utf-8"))
    spec["metadata"]["name"] = name
    training = spec["spec"]["training"]
    training["resources"] = {"nodes": 2, "gpusPerNode": 8}
    training["batchSize"] = 16
    path = folder / "named.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return str(path)


def problems_of(obj: dict) -> list[str]:
    """What the API server's validation refuses in one rendered object (the rules of
    kube/names.py, each cited there): names per kind, labels, selectors, hostnames."""
    kind, meta = obj["kind"], obj["metadata"]
    where = f"{kind}/{meta['name']}"
    found = []
    check = names.is_dns1035_label if kind in SERVICE_KINDS else names.is_dns1123_label
    if not check(meta["name"]):
        found.append(f"{where}: metadata.name")
    spec = obj.get("spec", {})
    template = spec.get("template", {})
    label_sets = [
        meta.get("labels", {}),
        template.get("metadata", {}).get("labels", {}),
        spec.get("selector", {}).get("matchLabels", {}),
        spec.get("podSelector", {}).get("matchLabels", {}),
        spec.get("selector", {}) if kind == "Service" else {},
    ]
    for labels in label_sets:
        for key, value in labels.items():
            if not names.is_label_value(value):
                found.append(f"{where}: label {key}={value!r}")
    pod = template.get("spec", {})
    if kind == "Job":
        # The Job controller labels pods with the Job's name (a label value).
        if not names.is_label_value(meta["name"]):
            found.append(f"{where}: job-name label")
        if spec.get("completionMode") == "Indexed":
            last = f"{meta['name']}-{spec['completions'] - 1}"
            if not names.is_dns1123_label(last):
                found.append(f"{where}: pod hostname {last!r}")
    if pod.get("subdomain") and not names.is_dns1123_label(pod["subdomain"]):
        found.append(f"{where}: spec.subdomain")
    for volume in pod.get("volumes", []):
        if not names.is_dns1123_label(volume["name"]):
            found.append(f"{where}: volume {volume['name']}")
    return found


@pytest.mark.parametrize("name", list(NAMES.values()), ids=list(NAMES))
def test_every_child_of_any_valid_name_is_valid(name, capsys, tmp_path):
    assert main(["manifests", spec_named(name, tmp_path)]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    assert any(o["kind"] == "Job" and o["spec"].get("completionMode") == "Indexed" for o in objects)
    problems = [p for o in objects if o["kind"] != "MultiTaskDeployment" for p in problems_of(o)]
    assert not problems, "\n".join(problems)
    children = [o["metadata"]["name"] for o in objects if o["kind"] != "MultiTaskDeployment"]
    kinds = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(set(kinds)) == len(kinds), "two children of one kind share a name"
    assert children


def test_names_that_fit_are_kept_and_others_are_hashed_not_cut():
    assert names.child_name("quickstart", "serving") == "quickstart-serving"
    assert names.service_name("quickstart", "serving") == "quickstart-serving"
    assert names.service_name("1st-model", "serving").startswith("m-1st-model-serving-")
    dotted, dashed = names.child_name("team.model", "x"), names.child_name("team-model", "x")
    assert dotted != dashed and dashed == "team-model-x", "a mapped name must not collide"
    long = "a" * 70
    assert names.child_name(long, "x") != names.child_name(long + "b", "x")
    assert names.child_name(long, "x") == names.child_name(long, "x")
    assert len(names.child_name(long, "x", limit=names.MAX_JOB_NAME)) == names.MAX_JOB_NAME


@pytest.mark.parametrize("value", ["a", "team.model", "x" * 63, "y" * 64, "z." * 126 + "z"])
def test_label_values_stand_for_any_resource_name(value):
    mapped = names.label_value(value)
    assert names.is_label_value(mapped)
    assert (mapped == value) == (len(value) <= 63)


def test_the_issues_example_job_name_now_fits():
    """customer-support-1's baseline Job gave hostname ...-fe1fa6ec65-0 (65 characters)."""
    job = names.child_name(
        "customer-support-1",
        "baseline-chinese-review-sentiment-fe1fa6ec65",
        limit=names.MAX_JOB_NAME,
    )
    assert names.is_dns1123_label(f"{job}-{names.MAX_NODES - 1}")
