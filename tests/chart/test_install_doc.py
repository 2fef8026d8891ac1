"""docs/install.md works as written, as far as it can be checked without a cluster: its
helm command renders, its manifests are valid, its paths exist and line up."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil

import kubernetes_validate
import pytest
import yaml

from .conftest import CHART, ROOT, Rendered
from .test_examples import errors as crd_errors

DOC = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")
KUBE_VERSION = kubernetes_validate.latest_version()


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", DOC, flags=re.S)


def commands() -> list[str]:
    """Shell commands with continuation lines joined, heredoc bodies left out."""
    out = []
    for block in shell_blocks():
        block = re.sub(r"<<'EOF'\n.*?\nEOF\n", "<<'EOF'\n", block, flags=re.S)
        pending = ""
        for line in block.replace("\\\n", " ").splitlines():
            pending += line if not pending else " " + line
            try:
                shlex.split(pending, comments=True)
            except ValueError:  # a quoted string goes on over the next line
                continue
            if pending.strip():
                out.append(pending.strip())
            pending = ""
        assert not pending, f"unterminated command: {pending}"
    return out


def environment() -> dict[str, str]:
    env = {}
    for command in commands():
        if command.startswith("export "):
            name, _, value = command.removeprefix("export ").partition("=")
            env[name] = value
    return env


def words(command: str) -> list[str]:
    command = command.split("  #", 1)[0]
    for name, value in environment().items():
        command = command.replace(f"${name}", value)
    return shlex.split(command)


def find(prefix: str) -> list[list[str]]:
    return [words(c) for c in commands() if c.startswith(prefix)]


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == name]


def test_docker_builds_use_the_repository_dockerfiles():
    builds = find("docker build")
    assert len(builds) == 2
    for argv in builds:
        assert (ROOT / option(argv, "-f")[0]).is_file()
        assert argv[-1] == "."
    pushed = {argv[-1] for argv in find("docker push")}
    assert pushed == {option(argv, "-t")[0] for argv in builds}


@pytest.fixture(scope="module")
def installed(run_helm) -> tuple[list[str], Rendered]:
    """The documented `helm install`, rendered with `helm template` and the same flags."""
    (argv,) = find("helm install")
    assert argv[:4] == ["helm", "install", "multitask-operator", "charts/multitask-operator"]
    flags = [word for word in argv[4:] if word != "--create-namespace"]
    result = run_helm("template", argv[2], str(CHART), *flags)
    return argv, Rendered(result.stdout)


def test_helm_install_renders_what_the_doc_says(installed):
    argv, rendered = installed
    namespace = option(argv, "--namespace")[0]
    images = {option(a, "-t")[0].rsplit(":", 1)[0] for a in find("docker build")}
    deployment = rendered.one("Deployment")
    assert deployment["metadata"]["namespace"] == namespace
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert {container["image"].rsplit(":", 1)[0], env["MTD_TRAINER_IMAGE"].rsplit(":", 1)[0]} == (
        images
    )
    (created,) = find("kubectl create namespace")
    assert [r["metadata"]["namespace"] for r in rendered.all("Role")] == [created[-1]] * 2
    (rollout,) = find(f"kubectl -n {namespace} rollout status")
    assert rollout[-1] == f"deployment/{deployment['metadata']['name']}"


def test_values_table_names_real_values(run_helm):
    values = yaml.safe_load(run_helm("show", "values", str(CHART)).stdout)
    table = [line for line in DOC.splitlines() if line.startswith("| `")]
    assert table
    for line in table:
        for name in re.findall(r"`([\w.]+)`", line.split("|")[1]):
            node = values
            for part in name.split("."):
                assert isinstance(node, dict) and part in node, f"{name}: no such value"
                node = node[part]


def heredoc_manifest() -> dict:
    (body,) = re.findall(r"<<'EOF'\n(.*?)\nEOF\n", DOC, flags=re.S)
    return yaml.safe_load(body)


def test_workspace_claim_is_valid_and_named_as_the_chart_expects():
    claim = heredoc_manifest()
    kubernetes_validate.validate(claim, KUBE_VERSION, strict=True)
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    assert claim["metadata"]["name"] == values["workspace"]["claim"]


def loader_pod() -> dict:
    (argv,) = find("kubectl -n ml run workspace-loader")
    (overrides,) = [w.removeprefix("--overrides=") for w in argv if w.startswith("--overrides=")]
    overrides = json.loads(overrides)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": argv[3]}, **overrides}


def test_loader_pod_is_valid_and_mounts_the_workspace():
    pod = loader_pod()
    kubernetes_validate.validate(pod, KUBE_VERSION, strict=True)
    mounts = pod["spec"]["containers"][0]["volumeMounts"]
    assert mounts == [{"name": "ws", "mountPath": "/workspace"}]
    assert pod["spec"]["securityContext"]["runAsUser"] == 65532


def sed_rewrite(example: str) -> str:
    """The text of `example` as the doc's sed command for it rewrites it."""
    (sed,) = [c for c in commands() if c.startswith("sed ") and shlex.split(c)[2] == example]
    expression = shlex.split(sed)[1]
    _, old, new, _ = expression.split("#")
    source = ROOT / example
    text = source.read_text(encoding="utf-8")
    assert old in text, f"the sed expression no longer matches {source}"
    return text.replace(old, new)


def cluster_resource() -> dict:
    """The example as the doc's sed rewrites it before `kubectl apply`."""
    return yaml.safe_load(sed_rewrite("examples/minimal/mtd.yaml"))


def test_the_reviewed_manifests_render_from_the_docs_cluster_copy(tmp_path, capsys):
    """Step 4: the quickstart as the doc rewrites it renders; as it is, it is refused."""
    from mtd_operator.cli import main

    folder = tmp_path / "quickstart"
    shutil.copytree(ROOT / "examples" / "quickstart" / "data", folder / "data")
    (folder / "cluster.yaml").write_text(sed_rewrite("examples/quickstart/mtd.yaml"))
    assert main(["manifests", str(folder / "cluster.yaml"), "-n", "ml"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    server = next(o for o in objects if o["metadata"]["name"].endswith("-serving"))
    model = server["spec"]["template"]["spec"]["containers"][0]["args"][0]
    assert model == "/workspace/models/smollm2-135m"
    assert main(["manifests", str(ROOT / "examples" / "quickstart" / "mtd.yaml")]) == 2


def test_applied_resource_is_valid_and_its_paths_are_on_the_workspace():
    resource = cluster_resource()
    assert crd_errors(resource) == {}
    copies = {argv[-1].split(":", 1)[1]: argv[-2] for argv in find("kubectl -n ml cp")}
    for source in copies.values():
        assert (ROOT / source).exists() or source.startswith(".cache/"), source
    uri = resource["spec"]["baseModel"]["uri"]
    assert "/workspace/" + uri.removeprefix("./") in copies
    data_root = next(dest for dest, src in copies.items() if src == "examples/minimal/data")
    for task in resource["spec"]["tasks"]:
        for path in task["data"].values():
            assert ("/workspace/" + path).startswith(data_root + "/"), path
    (wait,) = find("kubectl -n ml wait --for=condition=Ready mtd/")
    assert wait[5] == f"mtd/{resource['metadata']['name']}"


def test_expected_output_has_the_crd_printer_columns():
    crd = yaml.safe_load(
        (ROOT / "crds" / "multitask.dev_multitaskdeployments.yaml").read_text(encoding="utf-8")
    )
    columns = [
        c["name"].upper()
        for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]
        if not c.get("priority")
    ]
    outputs = re.findall(r"```text\n(.*?)```", DOC, flags=re.S)
    assert outputs
    for output in outputs:
        header, row = output.splitlines()[:2]
        assert header.split() == ["NAME", *columns]
        assert len(row.split()) == len(header.split())


def test_get_helm_script_is_the_documented_way():
    assert os.access(ROOT / "tools" / "get-helm.sh", os.X_OK)
    assert "tools/get-helm.sh" in DOC
