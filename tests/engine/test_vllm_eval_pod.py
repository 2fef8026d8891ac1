"""A cluster's evaluation asks the serving engine: the evaluation Job `mtd manifests`
renders, run as a kubelet would run its pod. The engine (vLLM, the native sidecar) starts
first from the engine virtualenv; the trainer container (the trainer image's virtualenv)
joins its pod network and scores every eval example through it at localhost.

The Job's last act, publishing its result to a ConfigMap, needs an API server; there is
none in this sandbox, so the test reads what the evaluation wrote to the workspace."""

from __future__ import annotations

import json

import pytest

from tests.support.image_venvs import image_venv
from tests.support.kubelet import run_container

from .conftest import (
    CLAIM,
    NODE_ENV,
    TRAINER_UID,
    as_trainer_wrote_it,
    lora_resource,
    render,
    write_adapter,
)

pytestmark = pytest.mark.slow


def test_an_evaluation_pod_scores_through_its_engine(workspace, venv, capsys) -> None:
    cluster = render(workspace, lora_resource(), capsys)
    configs = {
        name: json.loads(data["config.json"])
        for name, data in cluster.config_maps().items()
        if "config.json" in data
    }
    job = next(
        o for o in cluster.objects
        if o["kind"] == "Job" and configs.get(o["metadata"]["name"], {}).get("kind") == "evaluate"
        and configs[o["metadata"]["name"]]["tasks"][0]["name"] == "sentiment"
    )  # fmt: skip
    config = configs[job["metadata"]["name"]]
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["engine"]
    assert pod["securityContext"]["runAsUser"] == TRAINER_UID
    # The adapter the stage wrote, where the config (and the engine's flags) say; the
    # folders above it are the trainer pods' too.
    write_adapter(workspace / "models" / "tiny", cluster.host(config["adapter"]), seed=3)
    as_trainer_wrote_it(cluster.host(config["output_path"]).parents[3])

    with run_container(
        pod,
        image_venv=venv,
        claims={CLAIM: cluster.workspace},
        config_maps=cluster.config_maps(),
        node_env=NODE_ENV,
        container="engine",
    ) as engine:
        with run_container(
            pod,
            image_venv=image_venv("trainer"),
            claims={CLAIM: cluster.workspace},
            config_maps=cluster.config_maps(),
            container="trainer",
            network_of=engine,
        ) as trainer:
            trainer.process.wait(timeout=900)
            logs = trainer.logs()
        assert engine.process.poll() is None, engine.logs()[-3000:]  # served to the end

    results_path = cluster.host(config["output_path"])
    assert results_path.exists(), logs[-4000:]
    row = json.loads(results_path.read_text())["tasks"]["sentiment"]
    assert row["scored_by"] == "engine" and row["examples"] == 8, logs[-4000:]
    answers = json.loads(results_path.with_name(f"{results_path.stem}.answers.json").read_text())
    assert len(answers["sentiment"]) == 8 and set(answers["sentiment"]) <= {"pos", "neg"}
    assert "(served answers, http://127.0.0.1:8080)" in logs
