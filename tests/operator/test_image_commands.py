"""Every distinct Job command `mtd manifests` prints starts in the trainer image's
virtualenv and imports all it needs (tools/image-venv.sh: exactly what trainer/Dockerfile
installs). The Jobs run through the emulator's job runner in image mode, with the pod's
command, env and volumes as rendered; there is no base model, so the steps stop with exit
2 once their modules are imported, profiling publishes its result, and the verification
of the adapters vLLM would load at run time refuses them (none was trained)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from k8s_emulator import Emulator, JobRunner
from mtd_contract.pod import command_verb
from mtd_operator.cli import main
from tests.support.examples import cluster_example
from tests.support.image_venvs import image_venv

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "minimal"


def test_every_job_command_starts_and_imports_what_it_needs(tmp_path, capsys) -> None:
    bin_dir = image_venv("trainer") / "bin"
    spec = cluster_example(EXAMPLE / "mtd.yaml", tmp_path / "spec")
    assert main(["manifests", str(spec), "--set", "trainer.gpus=0"]) == 0
    objects = list(yaml.safe_load_all(capsys.readouterr().out))
    first: dict[str, dict] = {}  # one Job per distinct command
    for job in (o for o in objects if o["kind"] == "Job"):
        verb = command_verb(job["spec"]["template"]["spec"]["containers"][0]["command"])
        first.setdefault(verb, job)
    # verify: the Job that checks a new adapter set before vLLM loads it at run time
    assert set(first) == {"profile", "train", "evaluate", "compose", "verify"}
    names = {job["metadata"]["name"] for job in first.values()}

    workspace = tmp_path / "ws"
    shutil.copytree(EXAMPLE / "data", workspace / "data")
    with Emulator() as emulator:
        for obj in objects:
            if obj["metadata"]["name"] in names and obj["kind"] == "ConfigMap":
                emulator.create({**obj, "metadata": {**obj["metadata"], "ownerReferences": []}})
        runner = JobRunner(
            emulator,
            path_map={"/workspace": str(workspace)},
            extra_env={"KUBECONFIG": emulator.kubeconfig_path},
            image_bin=str(bin_dir),
            max_parallel=2,
        )
        with runner:
            for job in first.values():
                job["metadata"]["ownerReferences"] = []
                emulator.create(job)
            for verb, job in first.items():
                name = job["metadata"]["name"]
                done = emulator.wait_for(lambda n=name: _finished(emulator, n), timeout=600)
                pod = next(
                    p for p in emulator.list("v1/pods", job["metadata"]["namespace"])
                    if p["metadata"]["labels"]["job-name"] == name
                )  # fmt: skip
                logs = emulator.handler.pod_logs[(pod["metadata"]["namespace"],
                                                  pod["metadata"]["name"])]  # fmt: skip
                assert "ImportError" not in logs and "ModuleNotFoundError" not in logs, logs
                terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
                if verb == "profile":
                    assert "Complete" in _types(done), logs  # and it published its profiles
                    result = emulator.get("v1/configmaps", f"{name}-result", "default")
                    assert "profiles" in result["data"]["result.json"]
                elif verb == "verify":  # no adapter was trained: refused, naming it
                    assert terminated["exitCode"] == 2, logs
                    assert "refusing to serve" in terminated.get("message", logs), logs
                else:  # the base model is not there: bad input, after every import
                    assert terminated["exitCode"] == 2, logs
                    assert "PodFailurePolicy" in _types(done, reason=True), logs


def _types(job: dict, reason: bool = False) -> set[str]:
    conds = job["status"].get("conditions") or []
    return {c["reason"] if reason else c["type"] for c in conds if c["status"] == "True"}


def _finished(emulator: Emulator, name: str) -> dict | None:
    job = emulator.try_get("batch/v1/jobs", name, "default")
    return job if job and _types(job) & {"Complete", "Failed"} else None
